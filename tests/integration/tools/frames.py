"""Frame helpers shared by the integration test clients (ARP request/reply, ICMP echo)."""
import socket
import struct

GATEWAY_MAC = bytes.fromhex("5a94efe40cdd")


def mac(text):
    return bytes.fromhex(text.replace(":", ""))


def ip4(text):
    return socket.inet_aton(text)


def arp_request(src_mac, src_ip, target_ip):
    eth = b"\xff" * 6 + src_mac + b"\x08\x06"
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + src_mac + ip4(src_ip) + b"\x00" * 6 + ip4(target_ip)
    return (eth + arp).ljust(60, b"\x00")


def parse_arp_reply(frame):
    """Returns (sender_mac, sender_ip) if frame is an ARP reply, else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    op = struct.unpack("!H", frame[20:22])[0]
    if op != 2:
        return None
    return frame[22:28], socket.inet_ntoa(frame[28:32])

// dns_answer: the DNS server of bench/e2e/udp.sh's DNS row. A minimal authoritative responder
// that makes every answer from nothing but the query, so that it costs little next to the NAT
// stacks it is reached through (dnsmasq, single-threaded and doing much more per query, was the
// row's limit even on the kernel path).
//
//   dns_answer [IP]:PORT MAXSECS
//       Binds IP:PORT (0.0.0.0 when IP is left out) and answers for MAXSECS seconds, or until
//       SIGTERM/SIGINT; then prints queries=N answered=A ignored=I dropped=D on stdout.
//       recvmmsg(2)/sendmmsg(2) in batches of 64. Replies leave from the address the query was
//       sent to (IP_PKTINFO), so a wildcard bind serves every address of the namespace.
//
// What it answers (RFC 1035 wire format; RFC 6891 EDNS(0)):
//   A standard query (QR 0, OPCODE 0, TC 0) with QDCOUNT 1, ANCOUNT 0, NSCOUNT 0 and ARCOUNT 0,
//   or ARCOUNT 1 with that record an OPT pseudo-RR (root name, TYPE 41, well-formed options),
//   nothing after the last record, and a question name of uncompressed labels (at most 63
//   bytes each, 255 in all). The response is the query's header and question copied, then:
//     QTYPE A or ANY, QCLASS IN: one answer, name = compression pointer 0xc00c to the question,
//       TYPE A, CLASS IN, TTL 60, RDATA 192.0.2.1 (every name exists and has that one record);
//     another QTYPE, QCLASS IN: no answer (NOERROR, "no data");
//     another QCLASS: RCODE 5 (REFUSED);
//     EDNS version above 0: no answer, extended RCODE 16 (BADVERS; RFC 6891 6.1.3).
//   Flags: QR 1, OPCODE 0, AA 1, TC 0, RD copied, RA 1, Z 0, AD 0, CD copied. RA is set because
//   every query, recursive or not, is answered in full here: a recursive query gets the complete
//   answer it asked for (which is what resolvers with local records, dnsmasq among them, say
//   too), and dig would otherwise warn "recursion requested but not available". With EDNS the
//   response carries an OPT RR of its own: UDP payload size 1232, version 0, DO copied, no
//   options (so no cookie: a server without cookie support simply omits it, RFC 7873 5.2.1).
//   Responses are at most 12 + 255 + 4 + 16 + 11 = 298 bytes, within the 512 of plain DNS.
//   Anything else (a response, another OPCODE, other counts, a truncated or oversized datagram,
//   bad labels, trailing bytes, other additional records) is ignored: no reply.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define QMAX 4096  // larger queries are ignored (MSG_TRUNC)
#define RMAX 512   // every response fits (at most 298 bytes)
#define RCVBUF (8 << 20)
#define TTL 60
#define EDNS_SIZE 1232

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char* what) {
    fprintf(stderr, "dns_answer: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(void) {
    fprintf(stderr, "usage: dns_answer [IP]:PORT MAXSECS\n");
    exit(2);
}

static unsigned rd16(const uint8_t* p) {
    return (unsigned)p[0] << 8 | p[1];
}

static void wr16(uint8_t* p, unsigned v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void wr32(uint8_t* p, uint32_t v) {
    wr16(p, v >> 16);
    wr16(p + 2, v & 0xffff);
}

// answer: the response to the query q (n bytes) in r (RMAX bytes); its length, or 0 when the
// query is to be ignored.
static size_t answer(const uint8_t* q, size_t n, uint8_t* r) {
    if (n < 12) return 0;
    unsigned flags = rd16(q + 2);
    // QR (a response), OPCODE other than QUERY, TC (a truncated query): not a standard query.
    if (flags & 0x8000 || (flags >> 11 & 0xf) != 0 || flags & 0x0200) return 0;
    unsigned arcount = rd16(q + 10);
    if (rd16(q + 4) != 1 || rd16(q + 6) != 0 || rd16(q + 8) != 0 || arcount > 1) return 0;

    // The question: QNAME as uncompressed labels, then QTYPE and QCLASS.
    size_t p = 12;
    for (;;) {
        if (p >= n) return 0;
        unsigned len = q[p];
        if (len & 0xc0) return 0;  // a compression pointer or a reserved label type
        p += 1 + len;
        if (p - 12 > 255) return 0;
        if (len == 0) break;
    }
    if (p + 4 > n) return 0;
    unsigned qtype = rd16(q + p), qclass = rd16(q + p + 2);
    size_t qend = p + 4;

    // The additional section: nothing, or one OPT RR whose options fill its RDATA exactly.
    int edns = 0;
    unsigned version = 0, dobit = 0;
    if (arcount == 1) {
        if (qend + 11 > n || q[qend] != 0 || rd16(q + qend + 1) != 41) return 0;
        size_t rdlen = rd16(q + qend + 9), o = qend + 11;
        if (o + rdlen != n) return 0;
        while (o < n) {
            if (o + 4 > n || o + 4 + rd16(q + o + 2) > n) return 0;
            o += 4 + rd16(q + o + 2);
        }
        edns = 1;
        version = q[qend + 6];
        dobit = q[qend + 7] & 0x80;
    } else if (qend != n) {
        return 0;
    }

    unsigned rcode = 0, ancount = 0, extrcode = 0;
    if (edns && version != 0)
        extrcode = 1;  // BADVERS (16): upper 8 bits 1, header RCODE 0
    else if (qclass != 1)
        rcode = 5;  // REFUSED
    else if (qtype == 1 || qtype == 255)
        ancount = 1;

    memcpy(r, q, qend);  // the ID, then the question as it came
    wr16(r + 2, 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | (flags & 0x0010) | rcode);
    wr16(r + 4, 1);
    wr16(r + 6, ancount);
    wr16(r + 8, 0);
    wr16(r + 10, (unsigned)edns);
    size_t m = qend;
    if (ancount) {
        static const uint8_t addr[4] = {192, 0, 2, 1};
        wr16(r + m, 0xc00c);  // the name: a pointer to the question's, at offset 12
        wr16(r + m + 2, 1);   // TYPE A
        wr16(r + m + 4, 1);   // CLASS IN
        wr32(r + m + 6, TTL);
        wr16(r + m + 10, 4);  // RDLENGTH
        memcpy(r + m + 12, addr, 4);
        m += 16;
    }
    if (edns) {
        r[m] = 0;             // root
        wr16(r + m + 1, 41);  // TYPE OPT
        wr16(r + m + 3, EDNS_SIZE);
        r[m + 5] = (uint8_t)extrcode;
        r[m + 6] = 0;  // version
        r[m + 7] = (uint8_t)dobit;
        r[m + 8] = 0;
        wr16(r + m + 9, 0);  // RDLENGTH: no options
        m += 11;
    }
    return m;
}

static void parse_addr(const char* s, struct sockaddr_in* sa) {
    const char* colon = strrchr(s, ':');
    char ip[64];
    if (!colon || colon - s >= (long)sizeof ip) usage();
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    char* end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535) usage();
    sa->sin_port = htons((uint16_t)port);
    if (colon == s) {
        sa->sin_addr.s_addr = htonl(INADDR_ANY);
        return;
    }
    memcpy(ip, s, (size_t)(colon - s));
    ip[colon - s] = 0;
    if (inet_pton(AF_INET, ip, &sa->sin_addr) != 1) usage();
}

int main(int argc, char** argv) {
    if (argc != 3) usage();
    struct sockaddr_in addr;
    parse_addr(argv[1], &addr);
    char* end;
    double maxsecs = strtod(argv[2], &end);
    if (*end || !(maxsecs > 0)) usage();

    // No SA_RESTART: a signal interrupts recvmmsg(2), and the loop ends.
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    int one = 1, v = RCVBUF;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // SO_RCVBUFFORCE (root) ignores net.core.rmem_max; SO_RCVBUF is clamped to it.
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0) die("IP_PKTINFO");
    if (bind(fd, (struct sockaddr*)&addr, sizeof addr) < 0) die("bind");
    struct timeval tv = {0, 200000};  // wake up to check the time even when nothing comes
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) die("SO_RCVTIMEO");

    enum { CMSG = CMSG_SPACE(sizeof(struct in_pktinfo)) };
    static uint8_t qbuf[BATCH][QMAX], rbuf[BATCH][RMAX];
    static union {
        struct cmsghdr align;
        uint8_t b[CMSG];
    } qctl[BATCH], rctl[BATCH];
    static struct sockaddr_in from[BATCH];
    static struct mmsghdr qmsg[BATCH], rmsg[BATCH];
    static struct iovec qiov[BATCH], riov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        qiov[i].iov_base = qbuf[i];
        qiov[i].iov_len = QMAX;
        riov[i].iov_base = rbuf[i];
    }

    long long queries = 0, answered = 0, ignored = 0, dropped = 0;
    double deadline = now() + maxsecs;
    while (!stop && now() < deadline) {
        for (int i = 0; i < BATCH; i++) {
            struct msghdr* h = &qmsg[i].msg_hdr;
            h->msg_name = &from[i];
            h->msg_namelen = sizeof from[i];
            h->msg_iov = &qiov[i];
            h->msg_iovlen = 1;
            h->msg_control = qctl[i].b;
            h->msg_controllen = CMSG;
            h->msg_flags = 0;
        }
        int n = recvmmsg(fd, qmsg, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EINTR) die("recvmmsg");
            continue;
        }
        queries += n;
        int k = 0;
        for (int i = 0; i < n; i++) {
            struct msghdr* h = &qmsg[i].msg_hdr;
            size_t len = 0;
            if (!(h->msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && h->msg_namelen == sizeof from[i])
                len = answer(qbuf[i], qmsg[i].msg_len, rbuf[k]);
            if (len == 0) {
                ignored++;
                continue;
            }
            // Reply from the address the query was sent to.
            struct in_addr dst = {0};
            for (struct cmsghdr* c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c))
                if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO)
                    dst = ((struct in_pktinfo*)CMSG_DATA(c))->ipi_addr;
            struct msghdr* o = &rmsg[k].msg_hdr;
            memset(o, 0, sizeof *o);
            riov[k].iov_base = rbuf[k];
            riov[k].iov_len = len;
            o->msg_name = &from[i];
            o->msg_namelen = sizeof from[i];
            o->msg_iov = &riov[k];
            o->msg_iovlen = 1;
            if (dst.s_addr != 0) {
                memset(rctl[k].b, 0, CMSG);
                o->msg_control = rctl[k].b;
                o->msg_controllen = CMSG;
                struct cmsghdr* c = CMSG_FIRSTHDR(o);
                c->cmsg_level = IPPROTO_IP;
                c->cmsg_type = IP_PKTINFO;
                c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
                struct in_pktinfo pi = {0};
                pi.ipi_spec_dst = dst;
                memcpy(CMSG_DATA(c), &pi, sizeof pi);
            }
            k++;
        }
        // Send the batch; a datagram the kernel refuses (a full queue, an ICMP error come
        // back) is dropped and counted, like a reply lost on the way.
        for (int s = 0; s < k;) {
            int r = sendmmsg(fd, rmsg + s, (unsigned)(k - s), 0);
            if (r > 0) {
                answered += r;
                s += r;
            } else if (r < 0 && errno == EINTR) {
                continue;
            } else {
                dropped++;
                s++;
            }
        }
    }
    printf("queries=%lld answered=%lld ignored=%lld dropped=%lld\n", queries, answered, ignored,
           dropped);
    return 0;
}

// portfwd_crr: the connection-rate peers of bench/e2e/portfwd.sh (netperf's TCP_CRR through a
// port forward). Both ends bounded in time; results as one line of key=value pairs on stdout.
//
//   portfwd_crr server PORT LIFETIME
//       Listens on 0.0.0.0:PORT (backlog 128) and, one connection at a time, reads one byte,
//       answers one byte ('y') and closes first (so TIME_WAIT stays on the server's side, as in
//       tcp.sh's CRR). Each connection gets 5 s to send its byte. Exits after LIFETIME seconds.
//       prints, once, when its first connection arrives: peer=IP:PORT (the source address the
//       forwarding stack gave the connection: 127.0.0.1 would mean a loopback shortcut, such as
//       pasta's splice path, not a path through the guest's interface).
//   portfwd_crr client IP:PORT COUNT SECS
//       COUNT sequential connections to IP:PORT, or as many as fit in SECS: each connect, a
//       1-byte request, the 1-byte answer, the server's close (EOF), close. Timeouts of 5 s on
//       every step; the first failure ends the run (exit 1, the reason on stderr).
//       prints: conns=N secs=T rate=R (connections per second)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define STEP_TIMEOUT_S 5

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char* what) {
    fprintf(stderr, "portfwd_crr: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(void) {
    fprintf(stderr,
            "usage: portfwd_crr server PORT LIFETIME\n"
            "       portfwd_crr client IP:PORT COUNT SECS\n");
    exit(2);
}

static long number(const char* s, long lo, long hi) {
    char* end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) usage();
    return v;
}

static void set_timeouts(int fd) {
    struct timeval tv = {.tv_sec = STEP_TIMEOUT_S, .tv_usec = 0};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
        die("setsockopt(SO_RCVTIMEO/SO_SNDTIMEO)");
}

static void nodelay(int fd) {
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        die("setsockopt(TCP_NODELAY)");
}

_Noreturn static void server(long port, long lifetime) {
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)lifetime);  // the lifetime bound: SIGALRM's default action ends the process
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0) die("socket");
    int one = 1;
    if (setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("setsockopt(SO_REUSEADDR)");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(ls, (struct sockaddr*)&sa, sizeof sa) < 0) die("bind");
    if (listen(ls, 128) < 0) die("listen");
    int first = 1;
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int c = accept4(ls, (struct sockaddr*)&peer, &len, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
                continue;
            die("accept");
        }
        if (first) {
            char ip[INET_ADDRSTRLEN] = "?";
            inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
            printf("peer=%s:%u\n", ip, ntohs(peer.sin_port));
            fflush(stdout);
            first = 0;
        }
        set_timeouts(c);
        nodelay(c);
        char b;
        if (recv(c, &b, 1, 0) == 1) {
            (void)send(c, "y", 1, MSG_NOSIGNAL);
        }
        close(c);
    }
}

static int client(const char* dest, long count, long secs) {
    signal(SIGPIPE, SIG_IGN);
    const char* colon = strrchr(dest, ':');
    char ip[64];
    if (!colon || colon == dest || colon - dest >= (long)sizeof ip) usage();
    memcpy(ip, dest, (size_t)(colon - dest));
    ip[colon - dest] = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((unsigned short)number(colon + 1, 1, 65535))};
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) usage();
    double t0 = now(), deadline = t0 + (double)secs;
    long n = 0;
    for (; n < count && now() < deadline; n++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) die("socket");
        set_timeouts(s);  // SO_SNDTIMEO bounds connect(2) too
        if (connect(s, (struct sockaddr*)&sa, sizeof sa) < 0) {
            fprintf(stderr, "portfwd_crr: connection %ld: connect: %s\n", n + 1, strerror(errno));
            exit(1);
        }
        nodelay(s);
        char b[2];
        if (send(s, "x", 1, MSG_NOSIGNAL) != 1) {
            fprintf(stderr, "portfwd_crr: connection %ld: send: %s\n", n + 1, strerror(errno));
            exit(1);
        }
        ssize_t r = recv(s, b, 1, 0);
        if (r != 1 || b[0] != 'y') {
            fprintf(stderr, "portfwd_crr: connection %ld: no answer (%s)\n", n + 1,
                    r < 0    ? strerror(errno)
                    : r == 0 ? "EOF"
                             : "wrong byte");
            exit(1);
        }
        r = recv(s, b, 1, 0);
        if (r != 0) {
            fprintf(stderr, "portfwd_crr: connection %ld: no close after the answer (%s)\n", n + 1,
                    r < 0 ? strerror(errno) : "more data");
            exit(1);
        }
        close(s);
    }
    double t = now() - t0;
    printf("conns=%ld secs=%.3f rate=%.0f\n", n, t, t > 0 ? (double)n / t : 0.0);
    return 0;
}

int main(int argc, char** argv) {
    if (argc == 4 && strcmp(argv[1], "server") == 0)
        server(number(argv[2], 1, 65535), number(argv[3], 1, 86400));
    if (argc == 5 && strcmp(argv[1], "client") == 0)
        return client(argv[2], number(argv[3], 1, 100000000), number(argv[4], 1, 86400));
    usage();
    return 2;
}

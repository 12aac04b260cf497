/* hop-probe: one TCP forwarding hop, three ways, to measure what a hop costs and why pipe2me's
 * data path is what it is (docs/BENCHMARKS.md, "Profile of the misses").
 *
 *   hop-probe splice|copy|sockmap LISTEN_PORT BACKEND_PORT
 *
 * Listens on 127.0.0.1:LISTEN_PORT; for each connection, connects to 127.0.0.1:BACKEND_PORT and
 * forwards both ways in a child process until either side closes:
 *   splice   epoll + splice(2) socket -> pipe -> socket (pipe2me's bulk path, haproxy's splice)
 *   copy     epoll + recv(2)/send(2) through a 64 KiB buffer (pipe2me's small-message path)
 *   sockmap  no user space at all: both sockets go into a BPF sockhash whose SK_SKB verdict
 *            program redirects every received skb to the other socket's transmit side; the child
 *            only waits for a hang-up. Needs CAP_BPF and CAP_NET_ADMIN.
 * It is a probe, not a proxy: no limits, no half-close, no error handling beyond giving up. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h> /* splice */
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* BPF instructions written out by hand: the program is eleven lines of logic and not worth a
 * compiler toolchain for the BPF target. */
#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define MOV64_REG(d, s) INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV64_IMM(d, i) INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define ADD64_IMM(d, i) INSN(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, i)
#define STX_DW(d, s, o) INSN(BPF_STX | BPF_MEM | BPF_DW, d, s, o, 0)
#define LDX_DW(d, s, o) INSN(BPF_LDX | BPF_MEM | BPF_DW, d, s, o, 0)
#define LD_MAP_FD(d, fd) INSN(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_FD, 0, fd), INSN(0, 0, 0, 0, 0)
#define CALL(f) INSN(BPF_JMP | BPF_CALL, 0, 0, 0, f)
#define JEQ_IMM(d, i, o) INSN(BPF_JMP | BPF_JEQ | BPF_K, d, 0, o, i)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

static int peers_fd = -1, socks_fd = -1;

static long bpf(int cmd, union bpf_attr *a)
{
    return syscall(__NR_bpf, cmd, a, sizeof(*a));
}

static int map_create(uint32_t type, uint32_t key, uint32_t value, uint32_t max, uint32_t flags)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_type = type;
    a.key_size = key;
    a.value_size = value;
    a.max_entries = max;
    a.map_flags = flags;
    return (int)bpf(BPF_MAP_CREATE, &a);
}

static int map_put(int map, const void *key, const void *value)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = (uint32_t)map;
    a.key = (uintptr_t)key;
    a.value = (uintptr_t)value;
    a.flags = BPF_ANY;
    return (int)bpf(BPF_MAP_UPDATE_ELEM, &a);
}

/* peers: socket cookie -> the other socket's cookie; socks: cookie -> socket. The verdict:
 * look up the peer of the skb's socket and redirect to it; a socket without a peer keeps its
 * bytes (SK_PASS). */
static int sockmap_setup(void)
{
    static char log[16384];
    peers_fd = map_create(BPF_MAP_TYPE_HASH, 8, 8, 4096, BPF_F_NO_PREALLOC);
    socks_fd = map_create(BPF_MAP_TYPE_SOCKHASH, 8, 4, 4096, 0);
    if (peers_fd < 0 || socks_fd < 0) {
        perror("hop-probe: bpf map");
        return -1;
    }
    struct bpf_insn prog[] = {
        MOV64_REG(6, 1),                  /* 0: r6 = skb */
        CALL(BPF_FUNC_get_socket_cookie), /* 1 */
        STX_DW(10, 0, -8),                /* 2: key = cookie */
        MOV64_REG(2, 10),                 /* 3 */
        ADD64_IMM(2, -8),                 /* 4 */
        LD_MAP_FD(1, peers_fd),           /* 5, 6 */
        CALL(BPF_FUNC_map_lookup_elem),   /* 7 */
        JEQ_IMM(0, 0, 10),                /* 8: no peer -> 19 */
        LDX_DW(1, 0, 0),                  /* 9 */
        STX_DW(10, 1, -16),               /* 10: key = peer cookie */
        MOV64_REG(1, 6),                  /* 11 */
        LD_MAP_FD(2, socks_fd),           /* 12, 13 */
        MOV64_REG(3, 10),                 /* 14 */
        ADD64_IMM(3, -16),                /* 15 */
        MOV64_IMM(4, 0),                  /* 16: egress of the peer */
        CALL(BPF_FUNC_sk_redirect_hash),  /* 17 */
        EXIT(),                           /* 18 */
        MOV64_IMM(0, SK_PASS),            /* 19 */
        EXIT(),                           /* 20 */
    };
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.prog_type = BPF_PROG_TYPE_SK_SKB;
    a.insns = (uintptr_t)prog;
    a.insn_cnt = sizeof(prog) / sizeof(prog[0]);
    a.license = (uintptr_t) "GPL";
    a.log_buf = (uintptr_t)log;
    a.log_size = sizeof(log);
    a.log_level = 1;
    int fd = (int)bpf(BPF_PROG_LOAD, &a);
    if (fd < 0) {
        fprintf(stderr, "hop-probe: BPF_PROG_LOAD: %s\n%s\n", strerror(errno), log);
        return -1;
    }
    memset(&a, 0, sizeof(a));
    a.target_fd = (uint32_t)socks_fd;
    a.attach_bpf_fd = (uint32_t)fd;
    a.attach_type = BPF_SK_SKB_VERDICT;
    if (bpf(BPF_PROG_ATTACH, &a) != 0) {
        perror("hop-probe: BPF_PROG_ATTACH");
        return -1;
    }
    return 0;
}

static uint64_t cookie(int fd)
{
    uint64_t c = 0;
    socklen_t len = sizeof(c);
    getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len);
    return c;
}

/* The backend side goes in first: it is silent until the client's bytes reach it, so no byte can
 * be redirected to a socket not yet in the map. SO_RCVLOWAT runs the socket's data-ready hook,
 * which hands bytes that arrived before the insertion to the verdict. */
static void forward_sockmap(int c, int b)
{
    uint64_t cc = cookie(c), cb = cookie(b);
    uint32_t fc = (uint32_t)c, fb = (uint32_t)b;
    int one = 1;
    if (map_put(peers_fd, &cc, &cb) || map_put(peers_fd, &cb, &cc) || map_put(socks_fd, &cb, &fb) || map_put(socks_fd, &cc, &fc)) {
        perror("hop-probe: sockhash");
        return;
    }
    setsockopt(c, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLRDHUP};
    ev.data.fd = c;
    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
    ev.data.fd = b;
    epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev);
    epoll_wait(ep, &ev, 1, -1);
}

/* Sockets stay blocking, so writes wait for room; reads never block (MSG_DONTWAIT,
 * SPLICE_F_NONBLOCK), so one quiet side cannot stall the other. */
static void forward_user(int c, int b, int use_splice)
{
    static char buf[65536];
    int pc[2], pb[2], ep = epoll_create1(0);
    if (pipe(pc) || pipe(pb))
        return;
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.fd = c;
    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
    ev.data.fd = b;
    epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev);
    for (;;) {
        struct epoll_event out[2];
        int n = epoll_wait(ep, out, 2, -1);
        for (int i = 0; i < n; i++) {
            int src = out[i].data.fd, dst = src == c ? b : c, *p = src == c ? pc : pb;
            ssize_t got = use_splice ? splice(src, NULL, p[1], NULL, sizeof(buf), SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                                     : recv(src, buf, sizeof(buf), MSG_DONTWAIT);
            if (got == 0)
                return;
            if (got < 0)
                continue;
            for (ssize_t off = 0; off < got;) {
                ssize_t w = use_splice ? splice(p[0], NULL, dst, NULL, (size_t)(got - off), SPLICE_F_MOVE)
                                       : send(dst, buf + off, (size_t)(got - off), MSG_NOSIGNAL);
                if (w <= 0)
                    return;
                off += w;
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "splice") && strcmp(argv[1], "copy") && strcmp(argv[1], "sockmap"))) {
        fprintf(stderr, "usage: hop-probe splice|copy|sockmap LISTEN_PORT BACKEND_PORT\n");
        return 2;
    }
    const char *mode = argv[1];
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in ba = la;
    ba.sin_port = htons((uint16_t)atoi(argv[3]));
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
    if (!strcmp(mode, "sockmap") && sockmap_setup() != 0)
        return 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(l, (struct sockaddr *)&la, sizeof(la)) != 0 || listen(l, 128) != 0) {
        perror("hop-probe: listen");
        return 1;
    }
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0)
            continue;
        int b = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(b, (struct sockaddr *)&ba, sizeof(ba)) != 0) {
            perror("hop-probe: connect");
            close(c);
            close(b);
            continue;
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (fork() == 0) {
            close(l);
            if (!strcmp(mode, "sockmap"))
                forward_sockmap(c, b);
            else
                forward_user(c, b, !strcmp(mode, "splice"));
            _exit(0);
        }
        close(c);
        close(b);
    }
}

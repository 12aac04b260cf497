#ifndef P2M_TEST_TCP_PAIR_H
#define P2M_TEST_TCP_PAIR_H

/* A header-only helper for unit tests that need real connected TCP sockets (splice, reset). */

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* A connected loopback pair: out[0] the client end, out[1] the accepted end; non-blocking. */
static inline int tcp_pair(int out[2])
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int ok = l >= 0 && bind(l, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(l, 1) == 0 &&
             getsockname(l, (struct sockaddr *)&sa, &len) == 0;
    out[0] = out[1] = -1;
    if (ok) {
        out[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ok = out[0] >= 0 && connect(out[0], (struct sockaddr *)&sa, sizeof(sa)) == 0;
    }
    if (ok)
        ok = (out[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0;
    if (l >= 0)
        close(l);
    if (!ok)
        return -1;
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(out[1], F_SETFL, O_NONBLOCK);
    return 0;
}

#endif

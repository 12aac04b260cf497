/* p2m-dnsupd: lib/dnsupd.c from the command line, for tests/e2e/75-dns-update.sh.
 *
 *   p2m-dnsupd SERVER:PORT ZONE KEYFILE replace NAME TTL ADDR...
 *   p2m-dnsupd SERVER:PORT ZONE KEYFILE delete NAME
 *   p2m-dnsupd SERVER:PORT ZONE - lookup NAME          prints "TTL ADDR" per address
 *
 * P2M_DNSUPD_TIMEOUT_MS sets the timeout. Exit 0 on success, 1 with the one-line error on stderr,
 * 2 for a usage error. */

#include "p2m/addr.h"
#include "p2m/dnsupd.h"
#include "p2m/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr, "usage: p2m-dnsupd SERVER:PORT ZONE KEYFILE|- replace NAME TTL ADDR... | delete NAME | lookup NAME\n");
    return 2;
}

int main(int argc, char **argv)
{
    p2m_dnsupd_conf_t conf = {0};
    p2m_tsig_key_t key;
    char err[P2M_ERR_LEN];
    int rc = 1;

    if (argc < 6)
        return usage();
    if (p2m_hostport_parse(argv[1], &conf.server, err) != 0) {
        fprintf(stderr, "p2m-dnsupd: %s\n", err);
        return 2;
    }
    snprintf(conf.zone, sizeof(conf.zone), "%s", argv[2]);
    const char *t = getenv("P2M_DNSUPD_TIMEOUT_MS");
    conf.timeout_ms = t != NULL ? (unsigned)strtoul(t, NULL, 10) : 0;
    if (strcmp(argv[3], "-") != 0) {
        if (p2m_tsig_key_load(argv[3], &key, err) != 0) {
            fprintf(stderr, "p2m-dnsupd: %s\n", err);
            return 1;
        }
        conf.key = &key;
    }
    if (strcmp(argv[4], "replace") == 0 && argc >= 7) {
        rc = p2m_dnsupd_replace(&conf, argv[5], (const char *const *)argv + 7, (size_t)(argc - 7),
                                (uint32_t)strtoul(argv[6], NULL, 10), err) == 0
                 ? 0
                 : 1;
    } else if (strcmp(argv[4], "delete") == 0 && argc == 6) {
        rc = p2m_dnsupd_delete(&conf, argv[5], err) == 0 ? 0 : 1;
    } else if (strcmp(argv[4], "lookup") == 0 && argc == 6) {
        char addrs[P2M_DNSUPD_ADDRS_MAX][INET6_ADDRSTRLEN];
        size_t n;
        uint32_t ttl;
        rc = p2m_dnsupd_lookup(&conf, argv[5], addrs, P2M_DNSUPD_ADDRS_MAX, &n, &ttl, err) == 0 ? 0 : 1;
        for (size_t i = 0; rc == 0 && i < n; i++)
            printf("%u %s\n", (unsigned)ttl, addrs[i]);
    } else {
        rc = usage();
    }
    if (rc == 1)
        fprintf(stderr, "p2m-dnsupd: %s\n", err);
    p2m_tsig_key_clear(&key);
    return rc;
}

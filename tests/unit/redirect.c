/* Unit tests for pod/redirect.c against pod/redirect.h: which Location a pod follows a registrar's
 * 307 or 308 to. The pod's registrar is reg.example.net, its domain pipe2me.example; hostile rows
 * try other schemes, user info, other and look-alike hosts (suffix tricks, trailing dots, case),
 * IP literals, ports out of range, NUL bytes, bytes a path may not hold and overlong URLs. */

#include "check.h"
#include "p2m/err.h"
#include "redirect.h"

#include <stdlib.h>
#include <string.h>

#define LIT(s) s, sizeof(s) - 1

struct row {
    const char *url;
    size_t len;
    int rc;
};

static int check(const char *url, size_t len, const char *reg_host, const char *domain, char *out, char *err)
{
    char *copy = check_exact_copy(url, len); /* ASan sees a read past len */
    int rc = pod_redirect_check(copy, len, reg_host, domain, out, POD_REDIRECT_URL_MAX + 1, err);
    free(copy);
    return rc;
}

static void test_rows(void)
{
    static const struct row rows[] = {
        /* followed */
        {LIT("https://reg.example.net/register/web"), 0},
        {LIT("https://reg.example.net:8443/register/web"), 0},
        {LIT("HTTPS://REG.Example.NET/register/web"), 0},
        {LIT("https://pipe2me.example/register/web"), 0},
        {LIT("https://b.pipe2me.example:443/register/web"), 0},
        {LIT("https://a.b-c.pipe2me.example/p2m/register/web"), 0},
        {LIT("https://B.PIPE2ME.EXAMPLE/register/web?x=1"), 0},
        {LIT("https://pipe2me.example"), 0},
        {LIT("https://pipe2me.example:1/"), 0},
        {LIT("https://pipe2me.example:65535/"), 0},
        /* another scheme, or none */
        {LIT("http://pipe2me.example/register/web"), -1},
        {LIT("ftp://pipe2me.example/"), -1},
        {LIT("//pipe2me.example/register/web"), -1},
        {LIT("/register/web"), -1},
        {LIT("https:/pipe2me.example/"), -1},
        {LIT("https:pipe2me.example/"), -1},
        {LIT(" https://pipe2me.example/"), -1},
        {LIT(""), -1},
        {LIT("https://"), -1},
        {LIT("https:///register/web"), -1},
        /* user info */
        {LIT("https://user@pipe2me.example/"), -1},
        {LIT("https://user:pw@pipe2me.example/"), -1},
        {LIT("https://pipe2me.example@evil.example/"), -1},
        {LIT("https://evil.example@pipe2me.example/"), -1},
        {LIT("https://@pipe2me.example/"), -1},
        /* other and look-alike hosts */
        {LIT("https://evil.example/register/web"), -1},
        {LIT("https://evilpipe2me.example/register/web"), -1},
        {LIT("https://x.evilpipe2me.example/"), -1},
        {LIT("https://pipe2me.example.evil.example/"), -1},
        {LIT("https://pipe2me.example./"), -1},
        {LIT("https://x.pipe2me.example./"), -1},
        {LIT("https://.pipe2me.example/"), -1},
        {LIT("https://x..pipe2me.example/"), -1},
        {LIT("https://-x.pipe2me.example/"), -1},
        {LIT("https://x-.pipe2me.example/"), -1},
        {LIT("https://x_y.pipe2me.example/"), -1},
        {LIT("https://x%2epipe2me.example/"), -1},
        {LIT("https://pipe2me%2eexample/"), -1},
        {LIT("https://reg.example.net.evil.example/"), -1},
        {LIT("https://evilreg.example.net/"), -1},
        {LIT("https://x.reg.example.net/"), -1},
        {LIT("https://pipe2me.example\\@evil.example/"), -1},
        {LIT("https://pipe2me.example;evil.example/"), -1},
        /* IP literals */
        {LIT("https://127.0.0.1/register/web"), -1},
        {LIT("https://[::1]/register/web"), -1},
        {LIT("https://[::1]:443/register/web"), -1},
        {LIT("https://[pipe2me.example]/"), -1},
        {LIT("https://[x.pipe2me.example]/"), -1},
        {LIT("https://[::1/"), -1},
        {LIT("https://[]/"), -1},
        /* ports */
        {LIT("https://pipe2me.example:/"), -1},
        {LIT("https://pipe2me.example:0/"), -1},
        {LIT("https://pipe2me.example:65536/"), -1},
        {LIT("https://pipe2me.example:000443/"), -1},
        {LIT("https://pipe2me.example:44a/"), -1},
        {LIT("https://pipe2me.example:-1/"), -1},
        {LIT("https://pipe2me.example:443:443/"), -1},
        /* what a path may not hold */
        {LIT("https://pipe2me.example/a b"), -1},
        {LIT("https://pipe2me.example/a\r\nSet-Cookie: x"), -1},
        {LIT("https://pipe2me.example/a#frag"), -1},
        {LIT("https://pipe2me.example#frag"), -1},
        {LIT("https://pipe2me.example/a\"b"), -1},
        {LIT("https://pipe2me.example/\x7f"), -1},
        {LIT("https://pipe2me.example/\xc3\xa9"), -1},
        {LIT("https://pipe2me.example/a\0b"), -1},
        {LIT("https://pipe2me.example\0.evil.example/"), -1},
    };
    char out[POD_REDIRECT_URL_MAX + 1], err[P2M_ERR_LEN];
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        CHECK_CTX("row %zu: %s", i, check_bytes(r->url, r->len));
        err[0] = '\0';
        out[0] = '\0';
        int rc = check(r->url, r->len, "reg.example.net", "pipe2me.example", out, err);
        CHECK_RC(rc, r->rc, err);
        if (rc == 0)
            CHECK_MSG(strlen(out) == r->len && memcmp(out, r->url, r->len) == 0, "expected the URL copied, got %s", check_str(out));
        else
            CHECK_MSG(err[0] != '\0' && strchr(err, '\n') == NULL && strstr(err, "evil") == NULL,
                      "expected a one-line reason without the URL, got %s", check_str(err));
    }
    CHECK_CTX(NULL);
}

/* The registrar's host may be an IP literal (an IPv6 one without its brackets); a pod without a
 * domain follows only to its registrar's host. */
static void test_hosts(void)
{
    char out[POD_REDIRECT_URL_MAX + 1], err[P2M_ERR_LEN];
    CHECK_RC(check(LIT("https://[::1]:8443/register/web"), "::1", "pipe2me.example", out, err), 0, err);
    CHECK_RC(check(LIT("https://[::2]:8443/register/web"), "::1", "pipe2me.example", out, err), -1, err);
    CHECK_RC(check(LIT("https://127.0.0.5:8443/register/web"), "127.0.0.5", "pipe2me.example", out, err), 0, err);
    CHECK_RC(check(LIT("https://127.0.0.6:8443/register/web"), "127.0.0.5", "pipe2me.example", out, err), -1, err);
    CHECK_RC(check(LIT("https://reg.example.net/register/web"), "reg.example.net", "", out, err), 0, err);
    CHECK_RC(check(LIT("https://x.pipe2me.example/register/web"), "reg.example.net", "", out, err), -1, err);
    CHECK_RC(check(LIT("https://x/register/web"), "reg.example.net", "", out, err), -1, err);
    /* a registrar host that is itself under the domain, and the domain in upper case */
    CHECK_RC(check(LIT("https://other.pipe2me.example/"), "reg.pipe2me.example", "PIPE2ME.example", out, err), 0, err);
}

/* Lengths around the limit, and labels around 63 bytes. */
static void test_long(void)
{
    char out[POD_REDIRECT_URL_MAX + 1], err[P2M_ERR_LEN];
    char url[POD_REDIRECT_URL_MAX + 64];
    int n = snprintf(url, sizeof(url), "https://pipe2me.example/");
    memset(url + n, 'a', sizeof(url) - (size_t)n);
    CHECK_CTX("length at the limit");
    CHECK_RC(check(url, POD_REDIRECT_URL_MAX, "reg.example.net", "pipe2me.example", out, err), 0, err);
    CHECK_EQ_INT(strlen(out), POD_REDIRECT_URL_MAX);
    CHECK_CTX("one byte over");
    CHECK_RC(check(url, POD_REDIRECT_URL_MAX + 1, "reg.example.net", "pipe2me.example", out, err), -1, err);
    CHECK_CTX("a small out buffer");
    CHECK_RC(pod_redirect_check("https://pipe2me.example/", 24, "r", "pipe2me.example", out, 24, err), -1, err);
    CHECK_RC(pod_redirect_check("https://pipe2me.example/", 24, "r", "pipe2me.example", out, 25, err), 0, err);

    char host[128];
    memset(host, 'x', 63);
    snprintf(host + 63, sizeof(host) - 63, ".pipe2me.example");
    n = snprintf(url, sizeof(url), "https://%s/", host);
    CHECK_CTX("a 63-byte label");
    CHECK_RC(check(url, (size_t)n, "r", "pipe2me.example", out, err), 0, err);
    memset(host, 'x', 64);
    snprintf(host + 64, sizeof(host) - 64, ".pipe2me.example");
    n = snprintf(url, sizeof(url), "https://%s/", host);
    CHECK_CTX("a 64-byte label");
    CHECK_RC(check(url, (size_t)n, "r", "pipe2me.example", out, err), -1, err);
    CHECK_CTX(NULL);
}

int main(void)
{
    test_rows();
    test_hosts();
    test_long();
    return check_done("redirect");
}

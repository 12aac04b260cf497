/* libFuzzer target for p2m_host_parse: for two domains, the result must agree with a reference
 * written from host.h (DOMAIN or LABEL.DOMAIN, one optional trailing dot, optional :PORT 1-65535,
 * case-insensitive, at most P2M_HOST_HEADER_MAX bytes, no NUL), an accepted authority must give a
 * valid lower-case label, formatting it back must parse to the same result, and upper-casing the
 * input must change nothing. */

#include "fuzz.h"
#include "p2m/err.h"
#include "p2m/host.h"
#include "p2m/label.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
}

/* 1-63 bytes of [a-z0-9-] (already lower-cased), no leading or trailing hyphen */
static int reference_label(const uint8_t *s, size_t len)
{
    if (len == 0 || len > P2M_LABEL_MAX || s[0] == '-' || s[len - 1] == '-')
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

/* The contract of host.h, written independently of host.c. */
static int reference(const uint8_t *s, size_t len, const char *domain, char *label, unsigned *port)
{
    uint8_t name[P2M_HOST_HEADER_MAX];
    size_t name_len = len, dlen = strlen(domain);
    label[0] = '\0';
    *port = 0;
    if (len == 0 || len > P2M_HOST_HEADER_MAX || memchr(s, '\0', len) != NULL)
        return -1;
    const uint8_t *colon = memchr(s, ':', len);
    if (colon != NULL) {
        size_t digits = len - (size_t)(colon - s) - 1;
        unsigned v = 0;
        if (digits < 1 || digits > 5)
            return -1;
        for (size_t i = 0; i < digits; i++) {
            if (colon[1 + i] < '0' || colon[1 + i] > '9')
                return -1;
            v = v * 10 + (unsigned)(colon[1 + i] - '0');
        }
        if (v < 1 || v > 65535)
            return -1;
        *port = v;
        name_len = (size_t)(colon - s);
    }
    if (name_len > 0 && s[name_len - 1] == '.')
        name_len--;
    for (size_t i = 0; i < name_len; i++)
        name[i] = lower(s[i]);
    if (name_len == dlen && memcmp(name, domain, dlen) == 0)
        return P2M_HOST_BARE;
    if (name_len < dlen + 2 || name[name_len - dlen - 1] != '.' || memcmp(name + name_len - dlen, domain, dlen) != 0)
        return -1;
    size_t llen = name_len - dlen - 1;
    if (!reference_label(name, llen))
        return -1;
    memcpy(label, name, llen);
    label[llen] = '\0';
    return P2M_HOST_LABEL;
}

/* Parses a copy of exactly size bytes, so that ASan sees any read past the end. */
static int parse_copy(const uint8_t *data, size_t size, const char *domain, char *label, uint16_t *port, char *err)
{
    char *copy = malloc(size == 0 ? 1 : size);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, size);
    int rc = p2m_host_parse(copy, size, domain, label, port, err);
    free(copy);
    return rc;
}

static void check_domain(const uint8_t *data, size_t size, const char *domain)
{
    char label[P2M_LABEL_MAX + 1], want_label[P2M_LABEL_MAX + 1], err[P2M_ERR_LEN] = "";
    uint16_t port = 0;
    unsigned want_port;

    int rc = parse_copy(data, size, domain, label, &port, err);
    FUZZ_CHECK(rc == -1 || rc == P2M_HOST_BARE || rc == P2M_HOST_LABEL);
    int want = reference(data, size, domain, want_label, &want_port);
    FUZZ_CHECK(rc == want);
    if (rc < 0) {
        fuzz_check_err(err);
        return;
    }
    FUZZ_CHECK(port == want_port);
    FUZZ_CHECK(strnlen(label, sizeof(label)) < sizeof(label));
    FUZZ_CHECK(strcmp(label, want_label) == 0);
    if (rc == P2M_HOST_BARE) {
        FUZZ_CHECK(label[0] == '\0');
    } else {
        char norm[P2M_LABEL_MAX + 1];
        FUZZ_CHECK(p2m_label_normalize(label, strlen(label), norm, err) == 0);
        FUZZ_CHECK(strcmp(norm, label) == 0); /* already lower case */
    }

    /* Formatting the result back gives the same result. */
    char again[P2M_HOST_HEADER_MAX + 1], label2[P2M_LABEL_MAX + 1];
    uint16_t port2 = 0;
    int n = snprintf(again, sizeof(again), "%s%s%s", label, label[0] != '\0' ? "." : "", domain);
    if (port != 0)
        n += snprintf(again + n, sizeof(again) - (size_t)n, ":%u", (unsigned)port);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(again));
    FUZZ_CHECK(parse_copy((const uint8_t *)again, (size_t)n, domain, label2, &port2, err) == rc);
    FUZZ_CHECK(strcmp(label2, label) == 0 && port2 == port);

    /* Case does not matter. */
    uint8_t *upper = malloc(size);
    FUZZ_CHECK(upper != NULL);
    for (size_t i = 0; i < size; i++)
        upper[i] = data[i] >= 'a' && data[i] <= 'z' ? (uint8_t)(data[i] - 'a' + 'A') : data[i];
    FUZZ_CHECK(parse_copy(upper, size, domain, label2, &port2, err) == rc);
    FUZZ_CHECK(strcmp(label2, label) == 0 && port2 == port);
    free(upper);
}

/* p2m_host_is_own: an index into the list or -1, read within size bytes (an exact copy), port 0
 * on -1; upper-casing the input changes nothing (names are case-insensitive, addresses have none
 * that matter: hex digits of IPv6 compare as addresses). */
static void check_own(const uint8_t *data, size_t size)
{
    static const char *const own[] = {"registrar.example.org", "127.0.0.1", "::1", "2001:db8::7"};
    char *copy = malloc(size == 0 ? 1 : size);
    uint8_t *upper = malloc(size == 0 ? 1 : size);
    uint16_t port = 7, port2 = 7;
    FUZZ_CHECK(copy != NULL && upper != NULL);
    memcpy(copy, data, size);
    for (size_t i = 0; i < size; i++)
        upper[i] = data[i] >= 'a' && data[i] <= 'z' ? (uint8_t)(data[i] - 'a' + 'A') : data[i];
    int rc = p2m_host_is_own(copy, size, own, 4, &port);
    FUZZ_CHECK(rc >= -1 && rc < 4);
    FUZZ_CHECK(rc >= 0 || port == 0);
    FUZZ_CHECK(rc < 0 || size <= P2M_HOST_HEADER_MAX);
    memcpy(copy, upper, size);
    FUZZ_CHECK(p2m_host_is_own(copy, size, own, 4, &port2) == rc && port2 == port);
    free(copy);
    free(upper);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_own(data, size);
    check_domain(data, size, "pipe2me.localhost");
    check_domain(data, size, "localhost");
    return 0;
}

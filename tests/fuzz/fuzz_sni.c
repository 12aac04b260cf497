/* libFuzzer target for lib/sni.c: p2m_sni_parse() on whatever a client may send first, as the
 * relay's SNI listener calls it each time more bytes have arrived.
 *
 * Input: the bytes as they arrive. The whole input and each prefix checked are parsed from heap
 * copies of exactly their length, so ASan catches a read past len.
 *
 * Invariants: the status is one of the four; name is NUL-terminated, and "" unless FOUND; a FOUND
 * name is 1-253 bytes of [a-z0-9.-] in labels of 1-63 (no "..", no dot first or last); an INVALID
 * err is one printable line; NEED_MORE never for P2M_SNI_PEEK_MAX bytes or more. Prefixes get
 * NEED_MORE until the first other answer, which is the whole input's (with the same name) and stays:
 * every prefix is checked when the answer is FOUND or NONE (a spread of them for inputs over 4 KiB),
 * a spread otherwise. A FOUND or NONE ClientHello that came in one record gets the same answer
 * re-split into records of 1, 2, 7 and half its size, or INVALID when those no longer end within
 * P2M_SNI_PEEK_MAX bytes. */

#include "fuzz.h"
#include "p2m/err.h"
#include "p2m/sni.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SPLIT_MAX (6 * P2M_SNI_PEEK_MAX) /* a hello that fits one record, in records of 1 byte */

static p2m_sni_status_t parse_copy(const uint8_t *data, size_t len, char *name, char *err)
{
    uint8_t *in = malloc(len == 0 ? 1 : len);
    if (in == NULL)
        abort();
    memcpy(in, data, len);
    memset(name, 'x', P2M_SNI_NAME_MAX + 1);
    p2m_sni_status_t s = p2m_sni_parse(in, len, name, err);
    free(in);
    return s;
}

/* The invariants of one answer on its own. */
static void check_one(p2m_sni_status_t s, size_t len, const char *name, const char *err)
{
    FUZZ_CHECK(s == P2M_SNI_NEED_MORE || s == P2M_SNI_FOUND || s == P2M_SNI_NONE || s == P2M_SNI_INVALID);
    FUZZ_CHECK(memchr(name, '\0', P2M_SNI_NAME_MAX + 1) != NULL);
    if (s == P2M_SNI_NEED_MORE)
        FUZZ_CHECK(len < P2M_SNI_PEEK_MAX);
    if (s == P2M_SNI_INVALID)
        fuzz_check_err_printable(err);
    if (s != P2M_SNI_FOUND) {
        FUZZ_CHECK(name[0] == '\0');
        return;
    }
    size_t n = strlen(name), label = 0;
    FUZZ_CHECK(n >= 1 && n <= P2M_SNI_NAME_MAX);
    FUZZ_CHECK(name[0] != '.' && name[n - 1] != '.' && strstr(name, "..") == NULL);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.');
        label = c == '.' ? 0 : label + 1;
        FUZZ_CHECK(label <= 63);
    }
}

/* Prefixes of data, every `step`th and the last few: NEED_MORE, then the whole input's answer. */
static void check_prefixes(const uint8_t *data, size_t size, p2m_sni_status_t want, const char *want_name, size_t step)
{
    char name[P2M_SNI_NAME_MAX + 1], err[P2M_ERR_LEN];
    p2m_sni_status_t first = P2M_SNI_NEED_MORE;
    for (size_t p = 0; p < size; p++) {
        if (p % step != 0 && p + 8 < size)
            continue;
        p2m_sni_status_t s = parse_copy(data, p, name, err);
        check_one(s, p, name, err);
        if (first == P2M_SNI_NEED_MORE)
            FUZZ_CHECK(s == P2M_SNI_NEED_MORE || s == want);
        else
            FUZZ_CHECK(s == first);
        if (s == P2M_SNI_FOUND)
            FUZZ_CHECK(strcmp(name, want_name) == 0);
        if (s != P2M_SNI_NEED_MORE)
            first = s;
    }
}

/* The ClientHello of a flight that holds it in its first record, re-split into records of `size`. */
static void check_resplit(const uint8_t *data, size_t size, p2m_sni_status_t want, const char *want_name)
{
    static uint8_t out[SPLIT_MAX];
    char name[P2M_SNI_NAME_MAX + 1], err[P2M_ERR_LEN];
    if (size < 9)
        return;
    size_t rlen = (size_t)data[3] << 8 | data[4];
    size_t need = 4 + ((size_t)data[6] << 16 | (size_t)data[7] << 8 | data[8]);
    if (need > rlen || 5 + need > size)
        return; /* the ClientHello came in more than one record */
    const uint8_t *msg = data + 5;
    size_t sizes[] = {1, 2, 7, need / 2 + 1};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = 0;
        for (size_t at = 0; at < need; at += sizes[k]) {
            size_t take = need - at < sizes[k] ? need - at : sizes[k];
            FUZZ_CHECK(n + 5 + take <= sizeof(out));
            out[n++] = 22;
            out[n++] = 3;
            out[n++] = 3;
            out[n++] = (uint8_t)(take >> 8);
            out[n++] = (uint8_t)take;
            memcpy(out + n, msg + at, take);
            n += take;
        }
        p2m_sni_status_t s = parse_copy(out, n, name, err);
        check_one(s, n, name, err);
        if (n > P2M_SNI_PEEK_MAX) {
            FUZZ_CHECK(s == P2M_SNI_INVALID);
            continue;
        }
        FUZZ_CHECK(s == want);
        if (s == P2M_SNI_FOUND)
            FUZZ_CHECK(strcmp(name, want_name) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[P2M_SNI_NAME_MAX + 1], err[P2M_ERR_LEN];
    p2m_sni_status_t s = parse_copy(data, size, name, err);
    check_one(s, size, name, err);
    if (s == P2M_SNI_FOUND || s == P2M_SNI_NONE) {
        check_prefixes(data, size, s, name, size <= 4096 ? 1 : size / 4096 + 1);
        check_resplit(data, size, s, name);
    } else {
        check_prefixes(data, size, s, name, size <= 512 ? 1 : size / 256 + 1);
    }
    return 0;
}

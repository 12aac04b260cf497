#include "p2m/totp.h"
#include "p2m/err.h"

#include <liboath/oath.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_RAW_MAX 128

int p2m_totp_init(char *err)
{
    int rc = oath_init();
    if (rc != OATH_OK)
        return p2m_err(err, "liboath: %s", oath_strerror(rc));
    return 0;
}

void p2m_totp_done(void)
{
    oath_done();
}

int p2m_totp_secret_new(char *out, char *err)
{
    unsigned char raw[P2M_TOTP_SECRET_BYTES];
    char *b32 = NULL;
    size_t b32_len = 0;
    int ret = -1;

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        p2m_err(err, "RAND_bytes failed");
        goto Exit;
    }
    int rc = oath_base32_encode((const char *)raw, sizeof(raw), &b32, &b32_len);
    if (rc != OATH_OK || b32_len != P2M_TOTP_SECRET_B32_LEN) {
        p2m_err(err, "base32 encode: %s", rc != OATH_OK ? oath_strerror(rc) : "unexpected length");
        goto Exit;
    }
    memcpy(out, b32, b32_len);
    out[b32_len] = '\0';
    ret = 0;
Exit:
    OPENSSL_cleanse(raw, sizeof(raw));
    if (b32 != NULL) {
        OPENSSL_cleanse(b32, b32_len);
        free(b32);
    }
    return ret;
}

int p2m_totp_secret_decode(const char *b32, unsigned char *raw, size_t raw_cap, size_t *raw_len, char *err)
{
    /* Canonicalise first (upper case, no spaces or padding): liboath wants exactly that. */
    char canon[SECRET_RAW_MAX * 8 / 5 + 8];
    size_t n = 0;
    char *dec = NULL;
    size_t dec_len = 0;
    int ret = -1;

    int padding = 0;
    for (const char *p = b32; *p != '\0'; p++) {
        char c = *p;
        if (c == ' ')
            continue;
        if (c == '=') { /* padding, only at the end */
            padding = 1;
            continue;
        }
        if (padding) {
            p2m_err(err, "secret is not base32");
            goto Exit;
        }
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (!((c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7'))) {
            p2m_err(err, "secret is not base32");
            goto Exit;
        }
        if (n >= sizeof(canon) - 1) {
            p2m_err(err, "secret is longer than %d bytes", SECRET_RAW_MAX);
            goto Exit;
        }
        canon[n++] = c;
    }
    if (n == 0) {
        p2m_err(err, "secret is empty");
        goto Exit;
    }
    /* Re-pad to a multiple of 8 characters as RFC 4648 wants. */
    while (n % 8 != 0)
        canon[n++] = '=';
    canon[n] = '\0';
    int rc = oath_base32_decode(canon, n, &dec, &dec_len);
    if (rc != OATH_OK || dec_len == 0) {
        p2m_err(err, "secret is not base32");
        goto Exit;
    }
    if (dec_len > raw_cap || dec_len > SECRET_RAW_MAX) {
        p2m_err(err, "secret is longer than %zu bytes", raw_cap < SECRET_RAW_MAX ? raw_cap : (size_t)SECRET_RAW_MAX);
        goto Exit;
    }
    memcpy(raw, dec, dec_len);
    *raw_len = dec_len;
    ret = 0;
Exit:
    OPENSSL_cleanse(canon, sizeof(canon));
    if (dec != NULL) {
        OPENSSL_cleanse(dec, dec_len);
        free(dec);
    }
    return ret;
}

int p2m_totp_generate(const unsigned char *raw, size_t raw_len, time_t now, unsigned digits, char *out, char *err)
{
    if (digits < 6 || digits > 8)
        return p2m_err(err, "digits must be 6, 7 or 8");
    int rc = oath_totp_generate((const char *)raw, raw_len, now, P2M_TOTP_STEP, 0, digits, out);
    if (rc != OATH_OK)
        return p2m_err(err, "liboath: %s", oath_strerror(rc));
    return 0;
}

/* liboath's validators stop at the first match and compare with strcmp. We generate every code in
 * the window and compare each with CRYPTO_memcmp, so that timing reveals neither which step
 * matched nor how many leading digits were right. */
int p2m_totp_validate(const unsigned char *raw, size_t raw_len, time_t now, unsigned window, unsigned digits, const char *otp,
                      uint64_t *step)
{
    if (otp == NULL || raw_len == 0 || window > 10 || now < 0 || (digits != 6 && digits != 8))
        return -1;
    for (unsigned i = 0; i < digits; i++)
        if (otp[i] < '0' || otp[i] > '9')
            return -1;
    if (otp[digits] != '\0')
        return -1;

    uint64_t current = (uint64_t)now / P2M_TOTP_STEP;
    int matched = 0;
    uint64_t matched_step = 0;
    for (int64_t d = -(int64_t)window; d <= (int64_t)window; d++) {
        if (d < 0 && current < (uint64_t)-d)
            continue;
        uint64_t s = current + (uint64_t)d;
        char code[P2M_TOTP_DIGITS_MAX + 1];
        if (oath_totp_generate((const char *)raw, raw_len, (time_t)(s * P2M_TOTP_STEP), P2M_TOTP_STEP, 0, digits, code) != OATH_OK)
            return -1;
        int eq = CRYPTO_memcmp(code, otp, digits) == 0;
        OPENSSL_cleanse(code, sizeof(code));
        matched_step = eq && !matched ? s : matched_step;
        matched |= eq;
    }
    if (!matched)
        return -1;
    *step = matched_step;
    return 0;
}

/* Percent-encodes everything but RFC 3986 unreserved characters. */
static int uri_escape(const char *s, char *out, size_t cap, size_t *pos)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
                    *p == '_' || *p == '~';
        if (*pos + (plain ? 1 : 3) >= cap)
            return -1;
        if (plain) {
            out[(*pos)++] = (char)*p;
        } else {
            out[(*pos)++] = '%';
            out[(*pos)++] = hex[*p >> 4];
            out[(*pos)++] = hex[*p & 15];
        }
    }
    out[*pos] = '\0';
    return 0;
}

static int append(const char *s, char *out, size_t cap, size_t *pos)
{
    size_t n = strlen(s);
    if (*pos + n >= cap)
        return -1;
    memcpy(out + *pos, s, n + 1);
    *pos += n;
    return 0;
}

int p2m_totp_uri(const char *issuer, const char *account, const char *secret_b32, unsigned digits, char *out, size_t cap)
{
    size_t pos = 0;
    char tail[64];
    snprintf(tail, sizeof(tail), "&algorithm=SHA1&digits=%u&period=%d", digits, P2M_TOTP_STEP);
    if (cap == 0 || (digits != 6 && digits != 8) || append("otpauth://totp/", out, cap, &pos) != 0 ||
        uri_escape(issuer, out, cap, &pos) != 0 || append(":", out, cap, &pos) != 0 || uri_escape(account, out, cap, &pos) != 0 ||
        append("?secret=", out, cap, &pos) != 0 || uri_escape(secret_b32, out, cap, &pos) != 0 ||
        append("&issuer=", out, cap, &pos) != 0 || uri_escape(issuer, out, cap, &pos) != 0 || append(tail, out, cap, &pos) != 0)
        return -1;
    return (int)pos;
}

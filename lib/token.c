/* Setup tokens: making one, hashing one, and the checks their settings share (p2m/token.h). */
#include "p2m/token.h"
#include "p2m/err.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

_Static_assert(P2M_TOKEN_LEN == 48, "5 prefix bytes and 43 of base64url");

int p2m_token_new(char *out, char *err)
{
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[P2M_TOKEN_RAW_BYTES + 2] = {0}; /* two zero bytes pad the last group */
    size_t n = sizeof(P2M_TOKEN_PREFIX) - 1;

    if (RAND_bytes(raw, P2M_TOKEN_RAW_BYTES) != 1)
        return p2m_err(err, "RAND_bytes failed");
    memcpy(out, P2M_TOKEN_PREFIX, n);
    for (size_t i = 0; i < P2M_TOKEN_RAW_BYTES; i += 3) {
        unsigned long v = (unsigned long)raw[i] << 16 | (unsigned long)raw[i + 1] << 8 | raw[i + 2];
        for (int k = 18; k >= 0 && n < P2M_TOKEN_LEN; k -= 6)
            out[n++] = b64url[(v >> k) & 63];
    }
    out[n] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

int p2m_token_hash(const char *token, size_t len, char *hex, char *err)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(token, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != sizeof(md))
        return p2m_err(err, "SHA-256 failed");
    for (size_t i = 0; i < sizeof(md); i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int p2m_token_hex_valid(const char *s, size_t len, size_t n)
{
    if (len != n)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int p2m_token_label_prefix_check(const char *s, size_t len, char *err)
{
    if (len == 0)
        return p2m_err(err, "empty");
    if (len > P2M_TOKEN_LABEL_PREFIX_MAX)
        return p2m_err(err, "longer than %d bytes", P2M_TOKEN_LABEL_PREFIX_MAX);
    if (s[0] == '-')
        return p2m_err(err, "starts with a hyphen");
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return p2m_err(err, "only a-z, 0-9 and '-' (lower case) are allowed");
    }
    return 0;
}

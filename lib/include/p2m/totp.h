#ifndef P2M_TOTP_H
#define P2M_TOTP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* RFC 6238 TOTP as pipe2me uses it: HMAC-SHA-1, 30-second steps from the Unix epoch, 6 digits
 * (8 for a pod set up so, as some authenticators and the TAAS clients use), 160-bit secrets written in RFC 4648 base32 without
 * padding (32 characters), so that `oathtool --totp -b SECRET` prints the same codes. Built on liboath. */

#define P2M_TOTP_STEP 30
#define P2M_TOTP_DIGITS 6     /* the default */
#define P2M_TOTP_DIGITS_MAX 8 /* the longest code a pod may use */
#define P2M_TOTP_SECRET_BYTES 20
#define P2M_TOTP_SECRET_B32_LEN 32

/* Calls oath_init(); once per process before any other p2m_totp_* call. Returns 0 or -1. */
int p2m_totp_init(char *err);
void p2m_totp_done(void);

/* Draws a new secret from OpenSSL's RAND and writes its base32 form (P2M_TOTP_SECRET_B32_LEN + 1
 * bytes) to out. Returns 0 or -1. */
int p2m_totp_secret_new(char *out, char *err);

/* Decodes a base32 secret (case-insensitive, spaces and '=' padding allowed, at most 128 bytes
 * decoded) into raw, setting *raw_len. Returns 0 or -1. */
int p2m_totp_secret_decode(const char *b32, unsigned char *raw, size_t raw_cap, size_t *raw_len, char *err);

/* Writes the `digits`-digit code for time `now` to out (digits + 1 bytes). digits is 6, 7 or 8. */
int p2m_totp_generate(const unsigned char *raw, size_t raw_len, time_t now, unsigned digits, char *out, char *err);

/* Checks a code of `digits` digits (6 or 8) against time `now`, accepting `window` steps either
 * side. On a match returns 0 and sets *step to the matched step number (what replay protection
 * records); returns -1 when digits is neither 6 nor 8, the code is not exactly `digits` ASCII
 * digits or does not match, or window is over 10. The comparison does not depend on where the
 * codes differ. */
int p2m_totp_validate(const unsigned char *raw, size_t raw_len, time_t now, unsigned window, unsigned digits, const char *otp,
                      uint64_t *step);

/* Builds the otpauth:// URI that authenticator apps and provisioning files carry, for codes of
 * `digits` digits (6 or 8). Returns the number of bytes written (excluding NUL), or -1 when cap
 * is too small or digits is neither 6 nor 8. */
int p2m_totp_uri(const char *issuer, const char *account, const char *secret_b32, unsigned digits, char *out, size_t cap);

#endif

#ifndef P2M_LABEL_H
#define P2M_LABEL_H

#include <stddef.h>

/* Longest label (one DNS label) and longest pod ID, not counting the terminating NUL. */
#define P2M_LABEL_MAX 63
#define P2M_ID_MAX 64

/* Checks s[0..len) as a DNS label: 1-63 bytes of [A-Za-z0-9-], no leading or trailing
 * hyphen. On success writes the lower-cased label, NUL-terminated, to out (P2M_LABEL_MAX + 1
 * bytes) and returns 0; otherwise returns -1 and says why in err. Embedded NULs are refused. */
int p2m_label_normalize(const char *s, size_t len, char *out, char *err);

/* Checks a pod ID: 1-64 bytes of [A-Za-z0-9._-], starting with a letter or digit. IDs are
 * case-sensitive and travel inside a quoted header value, hence the narrow alphabet. */
int p2m_id_valid(const char *s, size_t len, char *err);

/* Writes a readable random label such as "handsome-lemon-panda" (adjective-fruit-animal,
 * 2^18 combinations, drawn with OpenSSL's RAND) to out (P2M_LABEL_MAX + 1 bytes).
 * Uniqueness is the caller's business: try again on collision. Returns 0, or -1 when the
 * random generator fails. */
int p2m_label_generate(char *out);

#endif

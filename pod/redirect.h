#ifndef POD_REDIRECT_H
#define POD_REDIRECT_H

/* Which URL a pod follows a registrar's 307 or 308 to (docs/PROTOCOL.md 1.7). A pure function over
 * bytes from the network, kept apart from the curl code so that tests/unit/redirect.c and
 * tests/fuzz/fuzz_redirect.c reach it. */

#include <stddef.h>

#define POD_REDIRECT_HOPS_MAX 3  /* redirects followed for one request; one more is refused */
#define POD_REDIRECT_URL_MAX 767 /* bytes of a Location followed; a longer one is refused */

/* Checks url[0..len) (not NUL-terminated; a NUL in it is refused) as the target of a redirect: an
 * absolute "https://" URL (scheme in any case) with no user info, whose host is reg_host (the pod's
 * registrar host, without brackets, compared case-insensitively), domain, or a name under domain
 * (one or more DNS labels then "." domain; domain "" allows none), an optional port 1 to 65535,
 * then nothing or a path of printable ASCII (no blank, '"', '\\', '#' or fragment), at most
 * POD_REDIRECT_URL_MAX bytes. An IP literal passes only as reg_host itself. Returns 0 with the URL
 * copied NUL-terminated to out (cap >= POD_REDIRECT_URL_MAX + 1 bytes), or -1 with a one-line
 * reason in err that holds none of url's bytes. */
int pod_redirect_check(const char *url, size_t len, const char *reg_host, const char *domain, char *out, size_t cap, char *err);

#endif

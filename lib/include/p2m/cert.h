#ifndef P2M_CERT_H
#define P2M_CERT_H

#include <stddef.h>

#include <openssl/x509.h>

/* Pod certificates (docs/PROTOCOL.md 4): the registrar checks a pod's CSR and issues a certificate
 * for LABEL.DOMAIN from it; the pod makes the CSR. Only the public key of a CSR is ever used. */

/* Largest CSR body the registrar reads (PROTOCOL 4.1). */
#define P2M_CSR_MAX 16384

/* PROTOCOL 4.2 step 2: parses pem[0..len) (at most P2M_CSR_MAX bytes) as exactly one PEM
 * CERTIFICATE REQUEST, white space around it allowed, and checks that it is for name (already
 * lower-case, e.g. "demo.pipe2me.localhost"):
 *   - its signature verifies with its own key;
 *   - the subject is empty or only a CN equal to name (case-insensitive);
 *   - a subjectAltName, if present, is exactly one entry DNS:name (case-insensitive), nothing
 *     else (no IP, email, URI, other DNS); without a subjectAltName the CN is required;
 *   - no basicConstraints CA:TRUE;
 *   - the key is RSA of 2048..8192 bits or EC on P-256, P-384 or P-521 (DSA, Ed25519, Ed448 and
 *     other curves are refused).
 * Returns the request, which the caller releases with X509_REQ_free, or NULL with a one-line
 * reason in err fit for an HTTP 400 body ("CSR names other.example, not demo.example"). A reason
 * quotes at most 64 bytes of the request's text, and never a control byte. */
X509_REQ *p2m_csr_check(const char *pem, size_t len, const char *name, char *err);

/* PROTOCOL 4.3: a new certificate for req's public key (req borrowed, already passed
 * p2m_csr_check): subject CN=name, SAN DNS:name, basicConstraints critical CA:FALSE, keyUsage
 * critical digitalSignature (+keyEncipherment for RSA keys), extendedKeyUsage serverAuth,
 * subjectKeyIdentifier, authorityKeyIdentifier keyid, a random 127-bit serial (top bit clear,
 * never 0), notBefore now-300, notAfter now+lifetime but never later than ca's notAfter, issuer
 * ca's subject, signed with ca_key (SHA-256). Nothing else is copied from req. now and lifetime
 * are unix seconds. ca and ca_key are borrowed. Returns the certificate (the caller X509_frees it)
 * or NULL with err. */
X509 *p2m_cert_issue(X509_REQ *req, const char *name, X509 *ca, EVP_PKEY *ca_key, long long now, long long lifetime, char *err);

/* A PEM CSR for name (subject CN=name and SAN DNS:name) signed by key (borrowed; SHA-256, or no
 * digest for keys that take none). Returns a malloc'd NUL-terminated string, its length without
 * the NUL in *len (len may be NULL), or NULL with err. The caller frees it with free(). */
char *p2m_csr_make(EVP_PKEY *key, const char *name, size_t *len, char *err);

/* Writes cert's notBefore and notAfter as unix seconds (UTC). Returns 0, or -1 when either time
 * cannot be read. */
int p2m_cert_validity(const X509 *cert, long long *not_before, long long *not_after);

/* Whether cert's subjectAltName lists name exactly: a DNS entry equal to it (ASCII case-insensitive;
 * "*.example.org" matches only the entry "*.example.org", no wildcard matching), or, when name is
 * an IP literal ("192.0.2.1", "2001:db8::1"), an IP entry of that address. cert is borrowed.
 * Returns 1 or 0 (also when cert has no subjectAltName). */
int p2m_cert_has_name(const X509 *cert, const char *name);

#endif

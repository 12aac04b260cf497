#ifndef REGISTRAR_DIRECT_H
#define REGISTRAR_DIRECT_H

#include "p2m/config.h"
#include "p2m/dnsupd.h"

/* The direct-path checker (PROTOCOL 5): every registrar.direct.check_interval seconds, driven by a
 * timer on h2o's loop, a worker thread visits the labels with direct paths (p2m:directs). For each
 * label whose lock it takes (one registrar per label and interval), it
 *   - checks the https service's public path: a TCP connection and a TLS handshake with SNI
 *     LABEL.DOMAIN whose chain verifies against the registrar's CA and names LABEL.DOMAIN; a pass
 *     marks it verified for 3 intervals, a failure removes the mark at once;
 *   - keeps LABEL.lan.DOMAIN (the lan path's address) and LABEL.direct.DOMAIN (the verified public
 *     path's address) in DNS by RFC 2136 (p2m/dnsupd.h) when the dns section is set, deleting a
 *     name whose path lapsed, failed, or whose pod is disabled or removed.
 * The first pass after start reconciles: it looks every name up in the zone and fixes what
 * differs; later passes compare with what Redis remembers having written (p2m:dns:names), and a
 * pass with a failed update looks up again. Every blocking call (TLS, DNS, its own synchronous
 * Redis connection) is on the worker thread, never on the loop. */

typedef struct registrar registrar_t;
typedef struct direct direct_t;

/* At start, before anything is served (and by --check-config): with a dns section, reads
 * dns.tsig_key_file (mode 0600 or 0400) into *key and checks that updates can be signed with it.
 * Without one, zeroes *key. Returns 0 or -1 with err naming the file. */
int direct_key_load(const p2m_config_t *cfg, p2m_tsig_key_t *key, char *err);

/* Starts the checker on r's loop (r->direct); key is copied and then cleared. Without a dns
 * section nothing is started (r->direct stays NULL): no consumer is sent to a direct path then, and
 * the registrar leaves the checking to those that keep DNS. Returns 0 or -1 with err (the thread
 * or the TLS context could not be made). */
int direct_start(registrar_t *r, p2m_tsig_key_t *key, char *err);

/* Stops the worker (waiting for the check in progress, at most a few seconds) and frees it.
 * NULL is a no-op. */
void direct_stop(direct_t *d);

#endif

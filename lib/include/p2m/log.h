#ifndef P2M_LOG_H
#define P2M_LOG_H

#include <stddef.h>

/* One line per event on stderr: `ts=2026-01-01T00:00:00.000Z level=info event=NAME k=v ...`.
 * Never pass secrets or one-time passwords. */

typedef enum { P2M_LOG_DEBUG, P2M_LOG_INFO, P2M_LOG_WARN, P2M_LOG_ERROR } p2m_log_level_t;

/* Sets the lowest level written (default P2M_LOG_INFO). */
void p2m_log_set_level(p2m_log_level_t level);

/* Parses "debug", "info", "warn" or "error"; returns -1 for anything else. */
int p2m_log_level_parse(const char *name, p2m_log_level_t *out);

/* Writes one event. fmt formats the key=value part (may be NULL). Control bytes and bytes
 * above 0x7e anywhere in the line are written as \xNN, so outside input cannot forge lines. */
void p2m_log(p2m_log_level_t level, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Copies len bytes of outside input (a path, a host name) into out for one log field: bytes other
 * than [A-Za-z0-9] and those in allowed become '?', so the field holds no space, quote or '='; at
 * most cap - 1 bytes (cap >= 2), "-" when empty. Returns out. */
const char *p2m_log_safe(const char *s, size_t len, const char *allowed, char *out, size_t cap);

#define P2M_LOG_ERR(event, ...) p2m_log(P2M_LOG_ERROR, event, __VA_ARGS__)

#endif

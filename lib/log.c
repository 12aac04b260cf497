#include "p2m/log.h"
#include "p2m/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static p2m_log_level_t min_level = P2M_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int p2m_err(char *err, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, P2M_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void p2m_log_set_level(p2m_log_level_t level)
{
    min_level = level;
}

int p2m_log_level_parse(const char *name, p2m_log_level_t *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (name != NULL && strcmp(name, level_names[i]) == 0) {
            *out = (p2m_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

/* Copies src into dst escaping every byte a terminal or a log parser could take for structure:
 * control bytes (newline above all) and bytes outside printable ASCII become \xNN. */
static size_t append_escaped(char *dst, size_t pos, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)src; *p != '\0'; p++) {
        if (*p >= 0x20 && *p <= 0x7e) {
            if (pos + 1 >= cap)
                break;
            dst[pos++] = (char)*p;
        } else {
            if (pos + 4 >= cap)
                break;
            dst[pos++] = '\\';
            dst[pos++] = 'x';
            dst[pos++] = hex[*p >> 4];
            dst[pos++] = hex[*p & 0xf];
        }
    }
    dst[pos] = '\0';
    return pos;
}

void p2m_log(p2m_log_level_t level, const char *event, const char *fmt, ...)
{
    if (level < min_level || level > P2M_LOG_ERROR)
        return;
    if (event == NULL)
        event = "unknown";

    char kv[2048] = "";
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(kv, sizeof(kv), fmt, ap);
        va_end(ap);
    }

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);

    char line[4096];
    int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s event=", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[level]);
    size_t pos = append_escaped(line, (size_t)n, sizeof(line) - 1, event);
    if (kv[0] != '\0') {
        line[pos++] = ' ';
        pos = append_escaped(line, pos, sizeof(line) - 1, kv);
    }
    line[pos++] = '\n';
    /* One write(2) per line so that lines from several processes sharing a file do not interleave. */
    ssize_t w = write(STDERR_FILENO, line, pos);
    (void)w;
}

const char *p2m_log_safe(const char *s, size_t len, const char *allowed, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c != '\0' && strchr(allowed, c) != NULL);
        out[n++] = ok ? (char)c : '?';
    }
    if (n == 0)
        out[n++] = '-';
    out[n] = '\0';
    return out;
}

/* pipe2me-admin: the helpers the command handlers share (see admin.h): memory, quoting outside
 * input for one-line messages, time, argument checks, Redis, JSON and table output. */
#include "admin.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p2m/log.h"

#define ADMIN_QUOTE_INPUT_MAX 96 /* bytes of an echoed argument before it is cut short */
_Static_assert(ADMIN_QUOTE_LEN >= 2 + ADMIN_QUOTE_INPUT_MAX * 4 + 3 + 1, "admin_quote() output must fit");

void *admin_xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL) {
        p2m_log(P2M_LOG_ERROR, "oom", "bytes=%zu", n);
        abort();
    }
    return p;
}

void *admin_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n == 0 ? 1 : n);
    if (q == NULL) {
        p2m_log(P2M_LOG_ERROR, "oom", "bytes=%zu", n);
        abort();
    }
    return q;
}

/* Appends s[0..len) to out at *pos, printable ASCII as is and every other byte as \xNN, while
 * there is room for the result plus reserve bytes and the NUL. Returns 0 when all of it fit. */
static int escape_append(const char *s, size_t len, char *out, size_t *pos, size_t cap, size_t reserve)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = (c >= 0x20 && c <= 0x7e) ? 1 : 4;
        if (*pos + need + reserve + 1 > cap) {
            out[*pos] = '\0';
            return -1;
        }
        if (need == 1) {
            out[(*pos)++] = (char)c;
        } else {
            out[(*pos)++] = '\\';
            out[(*pos)++] = 'x';
            out[(*pos)++] = hex[c >> 4];
            out[(*pos)++] = hex[c & 0xf];
        }
    }
    out[*pos] = '\0';
    return 0;
}

const char *admin_quote(const char *s, char *out)
{
    size_t len = strnlen(s, ADMIN_QUOTE_INPUT_MAX + 1), pos = 0;
    int cut = len > ADMIN_QUOTE_INPUT_MAX;
    out[pos++] = '"';
    /* ADMIN_QUOTE_INPUT_MAX bytes escaped take at most 4 times as much: always fits */
    escape_append(s, cut ? ADMIN_QUOTE_INPUT_MAX : len, out, &pos, ADMIN_QUOTE_LEN, 4);
    if (cut) {
        memcpy(out + pos, "...", 3);
        pos += 3;
    }
    out[pos++] = '"';
    out[pos] = '\0';
    return out;
}

char *admin_escape_dup(const char *s)
{
    size_t len = strlen(s), cap = len * 4 + 1, pos = 0;
    char *out = admin_xmalloc(cap);
    escape_append(s, len, out, &pos, cap, 0);
    return out;
}

const char *admin_time_iso(long long t, char *out)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t < 0 || (long long)tt != t || gmtime_r(&tt, &tm) == NULL || strftime(out, ADMIN_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        strcpy(out, "-");
    return out;
}

int admin_check_id(const char *id, char *err)
{
    char why[P2M_ERR_LEN], q[ADMIN_QUOTE_LEN];
    if (p2m_id_valid(id, strlen(id), why) != 0)
        return p2m_err(err, "invalid pod ID %s: %s", admin_quote(id, q), why);
    return 0;
}

int admin_check_label(const char *s, char *out, char *err)
{
    char why[P2M_ERR_LEN], q[ADMIN_QUOTE_LEN];
    if (p2m_label_normalize(s, strlen(s), out, why) != 0)
        return p2m_err(err, "invalid label %s: %s", admin_quote(s, q), why);
    return 0;
}

p2m_store_t *admin_connect(admin_t *a, char *err)
{
    p2m_store_t *st = p2m_store_connect(&a->cfg.redis, ADMIN_REDIS_TIMEOUT_MS, err);
    if (st != NULL)
        p2m_store_flag_unconfirmed(st, &a->unconfirmed);
    return st;
}

int admin_flush_stdout(char *err)
{
    if (fflush(stdout) != 0 || ferror(stdout))
        return p2m_err(err, "stdout: %s", errno != 0 ? strerror(errno) : "write error");
    return 0;
}

int admin_json_print(json_t *v, char *err)
{
    if (json_dumpf(v, stdout, JSON_INDENT(2)) != 0 || fputc('\n', stdout) == EOF)
        return p2m_err(err, "stdout: %s", errno != 0 ? strerror(errno) : "write error");
    return admin_flush_stdout(err);
}

int admin_confirm(const admin_t *a, json_t *obj, char *err, const char *fmt, ...)
{
    int ret = -1;
    if (obj == NULL) {
        p2m_err(err, "cannot build the JSON reply");
        goto Exit;
    }
    if (a->capture != NULL) {
        *a->capture = obj;
        obj = NULL;
    } else if (a->json) {
        if (admin_json_print(obj, err) != 0)
            goto Exit;
    } else {
        va_list ap;
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        if (admin_flush_stdout(err) != 0)
            goto Exit;
    }
    ret = 0;
Exit:
    json_decref(obj);
    return ret;
}

int admin_ls_print(admin_t *a, admin_list_fn list, size_t ncols, const char *const *headers, char *err)
{
    json_t *arr = NULL;
    admin_table_t table;
    int ret = -1;

    admin_table_init(&table, ncols, headers);
    if (list(a, a->json ? &arr : NULL, a->json ? NULL : &table, err) != 0)
        goto Exit;
    if (a->json ? admin_json_print(arr, err) != 0 : admin_table_print(&table, err) != 0)
        goto Exit;
    ret = 0;
Exit:
    json_decref(arr);
    admin_table_dispose(&table);
    return ret;
}

void admin_table_init(admin_table_t *t, size_t ncols, const char *const *headers)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols > ADMIN_TABLE_COLS_MAX ? ADMIN_TABLE_COLS_MAX : ncols;
    admin_table_add(t, headers);
}

void admin_table_add(admin_table_t *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap == 0 ? 16 : t->cap * 2;
        t->cells = admin_xrealloc(t->cells, t->cap * t->ncols * sizeof(*t->cells));
    }
    for (size_t c = 0; c < t->ncols; c++) {
        char *cell = admin_escape_dup(cells[c] == NULL || cells[c][0] == '\0' ? "-" : cells[c]);
        size_t width = strlen(cell);
        t->cells[t->nrows * t->ncols + c] = cell;
        if (width > t->width[c])
            t->width[c] = width;
    }
    t->nrows++;
}

int admin_table_print(const admin_table_t *t, char *err)
{
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            if (c + 1 < t->ncols)
                printf("%-*s  ", (int)t->width[c], cell);
            else
                printf("%s\n", cell);
        }
    }
    return admin_flush_stdout(err);
}

void admin_table_dispose(admin_table_t *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

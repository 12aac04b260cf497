/* Sentinel discovery and AUTH (p2m/sentinel.h). */
#include "p2m/sentinel.h"
#include "p2m/err.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int p2m_redis_password_read(const char *path, char *out, char *err)
{
    char buf[P2M_REDIS_PASSWORD_MAX + 3]; /* the line, "\r\n" and one byte more to see an overlong one */
    struct stat st;
    size_t got = 0;
    int ret = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        p2m_err(err, "%s: %s", path, strerror(errno));
        goto Exit;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        p2m_err(err, "%s: not a regular file", path);
        goto Exit;
    }
    if ((st.st_mode & 077) != 0) {
        p2m_err(err, "%s: holds a password but group or others may read it (mode %03o): chmod 600 %s", path,
                (unsigned)(st.st_mode & 0777), path);
        goto Exit;
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, sizeof(buf) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            p2m_err(err, "%s: %s", path, strerror(errno));
            goto Exit;
        }
        if (n == 0 || (got += (size_t)n) == sizeof(buf))
            break;
    }
    if (got > 0 && buf[got - 1] == '\n')
        got--;
    if (got > 0 && buf[got - 1] == '\r')
        got--;
    if (got == 0) {
        p2m_err(err, "%s: empty, expected the password on one line", path);
        goto Exit;
    }
    if (got > P2M_REDIS_PASSWORD_MAX) {
        p2m_err(err, "%s: longer than %d bytes, expected the password on one line", path, P2M_REDIS_PASSWORD_MAX);
        goto Exit;
    }
    if (memchr(buf, '\0', got) != NULL || memchr(buf, '\n', got) != NULL || memchr(buf, '\r', got) != NULL) {
        p2m_err(err, "%s: expected the password on one line (no NUL, CR or LF inside)", path);
        goto Exit;
    }
    memcpy(out, buf, got);
    out[got] = '\0';
    ret = 0;
Exit:
    memset(buf, 0, sizeof(buf));
    if (fd >= 0)
        close(fd);
    return ret;
}

int p2m_sentinel_master_reply(const redisReply *r, p2m_hostport_t *out, char *err)
{
    char hp[P2M_HOST_MAX + 16];
    if (r == NULL)
        return p2m_err(err, "no answer");
    if (r->type == REDIS_REPLY_NIL)
        return p2m_err(err, "does not know the master");
    if (r->type == REDIS_REPLY_ERROR)
        return p2m_err(err, "%.80s", r->str);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_STRING)
        return p2m_err(err, "expected [IP, PORT]");
    const redisReply *ip = r->element[0], *port = r->element[1];
    if (ip->len == 0 || ip->len > P2M_HOST_MAX || memchr(ip->str, '\0', ip->len) != NULL || port->len > 5 ||
        memchr(port->str, '\0', port->len) != NULL)
        return p2m_err(err, "expected [IP, PORT]");
    snprintf(hp, sizeof(hp), strchr(ip->str, ':') != NULL ? "[%s]:%s" : "%s:%s", ip->str, port->str);
    p2m_hostport_t tmp;
    if (p2m_hostport_parse(hp, &tmp, NULL) != 0 || tmp.host[0] == '\0')
        return p2m_err(err, "expected [IP, PORT]");
    *out = tmp;
    return 0;
}

int p2m_sentinel_role_reply(const redisReply *r, char *err)
{
    if (r == NULL)
        return p2m_err(err, "no answer to ROLE");
    if (r->type == REDIS_REPLY_ERROR)
        return p2m_err(err, "ROLE: %.80s", r->str);
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_STRING)
        return p2m_err(err, "ROLE: malformed answer");
    const char *role = r->element[0]->str;
    if (strcmp(role, "master") == 0)
        return 0;
    if (strcmp(role, "slave") == 0)
        return p2m_err(err, "a replica, not the primary");
    if (strcmp(role, "sentinel") == 0)
        return p2m_err(err, "a sentinel, not the primary");
    return p2m_err(err, "ROLE: unexpected role");
}

/* One space-separated field of msg[*pos..len) into out (cap bytes with the NUL). */
static int field(const char *msg, size_t len, size_t *pos, char *out, size_t cap)
{
    size_t start = *pos, n;
    while (*pos < len && msg[*pos] != ' ')
        (*pos)++;
    n = *pos - start;
    if (n == 0 || n >= cap || memchr(msg + start, '\0', n) != NULL)
        return -1;
    memcpy(out, msg + start, n);
    out[n] = '\0';
    if (*pos < len)
        (*pos)++;
    return 0;
}

static int hostport_of(const char *ip, const char *port, p2m_hostport_t *out)
{
    char hp[P2M_HOST_MAX + 16];
    snprintf(hp, sizeof(hp), strchr(ip, ':') != NULL ? "[%s]:%s" : "%s:%s", ip, port);
    return p2m_hostport_parse(hp, out, NULL) != 0 || out->host[0] == '\0' ? -1 : 0;
}

int p2m_sentinel_switch_parse(const char *msg, size_t len, const char *master, p2m_hostport_t *old, p2m_hostport_t *now)
{
    char name[P2M_REDIS_MASTER_MAX + 1], oip[P2M_HOST_MAX + 1], oport[8], nip[P2M_HOST_MAX + 1], nport[8];
    size_t pos = 0;
    if (msg == NULL || len == 0 || msg[len - 1] == ' ' || field(msg, len, &pos, name, sizeof(name)) != 0 ||
        field(msg, len, &pos, oip, sizeof(oip)) != 0 || field(msg, len, &pos, oport, sizeof(oport)) != 0 ||
        field(msg, len, &pos, nip, sizeof(nip)) != 0 || field(msg, len, &pos, nport, sizeof(nport)) != 0 || pos != len)
        return -1;
    if (hostport_of(oip, oport, old) != 0 || hostport_of(nip, nport, now) != 0)
        return -1;
    return strcmp(name, master) == 0 ? 1 : 0;
}

int p2m_redis_auth_argv(const char *user, const char *password, const char *argv[3])
{
    int argc = 0;
    argv[argc++] = "AUTH";
    if (user != NULL && user[0] != '\0')
        argv[argc++] = user;
    argv[argc++] = password;
    return argc;
}

/* Connects to host:port with the timeout for the connect and every command. NULL with err. */
static redisContext *connect_tcp(const char *host, uint16_t port, unsigned timeout_ms, char *err)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *rc = redisConnectWithTimeout(host, port, tv);
    if (rc == NULL || rc->err) {
        p2m_err(err, "%s", rc != NULL ? rc->errstr : "cannot allocate context");
        goto Fail;
    }
    if (redisSetTimeout(rc, tv) != REDIS_OK) {
        p2m_err(err, "cannot set timeout");
        goto Fail;
    }
    return rc;
Fail:
    if (rc != NULL)
        redisFree(rc);
    return NULL;
}

/* AUTH on rc. The error says what Redis answered (WRONGPASS, "no password is set"), never the
 * password. */
static int auth(redisContext *rc, const char *user, const char *password, char *err)
{
    const char *argv[3];
    int argc = p2m_redis_auth_argv(user, password, argv);
    redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
    int ret = 0;
    if (r == NULL)
        ret = p2m_err(err, "AUTH: %s", rc->errstr[0] ? rc->errstr : "connection lost");
    else if (r->type == REDIS_REPLY_ERROR)
        ret = p2m_err(err, "AUTH refused: %.80s", r->str);
    freeReplyObject(r);
    return ret;
}

int p2m_sentinel_ask(const p2m_redis_addr_t *a, unsigned i, unsigned timeout_ms, p2m_hostport_t *primary, char *err)
{
    char why[P2M_ERR_LEN];
    int ret = -1;
    redisReply *r = NULL;
    redisContext *rc = connect_tcp(a->sentinels[i].host, a->sentinels[i].port, timeout_ms, why);
    if (rc == NULL)
        goto Exit;
    if (a->sentinel_password[0] != '\0' && auth(rc, "", a->sentinel_password, why) != 0)
        goto Exit;
    const char *argv[] = {"SENTINEL", "get-master-addr-by-name", a->master};
    r = redisCommandArgv(rc, 3, argv, NULL);
    if (r == NULL) {
        p2m_err(why, "%s", rc->errstr[0] ? rc->errstr : "connection lost");
        goto Exit;
    }
    ret = p2m_sentinel_master_reply(r, primary, why);
Exit:
    if (ret != 0) {
        char hp[P2M_HOST_MAX + 16];
        p2m_hostport_format(a->sentinels[i].host, a->sentinels[i].port, hp, sizeof(hp));
        p2m_err(err, "sentinel %s: %s", hp, why);
    }
    freeReplyObject(r);
    if (rc != NULL)
        redisFree(rc);
    return ret;
}

redisContext *p2m_redis_connect_sync(const p2m_redis_addr_t *a, unsigned timeout_ms, char *where, size_t wcap, char *err)
{
    char why[P2M_ERR_LEN] = "", hp[P2M_HOST_MAX + 16], shp[P2M_HOST_MAX + 16];
    redisContext *rc = NULL;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

    if (a->nsentinels == 0) {
        if (a->is_unix) {
            snprintf(where, wcap, "redis unix:%s", a->path);
            rc = redisConnectUnixWithTimeout(a->path, tv);
            if (rc != NULL && !rc->err && redisSetTimeout(rc, tv) != REDIS_OK)
                p2m_err(why, "cannot set timeout");
            else if (rc == NULL || rc->err)
                p2m_err(why, "%s", rc != NULL ? rc->errstr : "cannot allocate context");
        } else {
            p2m_hostport_format(a->tcp.host, a->tcp.port, hp, sizeof(hp));
            snprintf(where, wcap, "redis %s", hp);
            rc = connect_tcp(a->tcp.host, a->tcp.port, timeout_ms, why);
        }
        if (why[0] == '\0' && a->password[0] != '\0')
            auth(rc, a->user, a->password, why);
        if (why[0] != '\0') {
            p2m_err(err, "%s: %s", where, why);
            if (rc != NULL)
                redisFree(rc);
            return NULL;
        }
        return rc;
    }
    /* A Sentinel may name a stale primary (it has not seen the failover yet): the next one is
     * asked, and the last reason is reported when none names one that answers as the primary. */
    for (unsigned i = 0; i < a->nsentinels; i++) {
        p2m_hostport_t primary;
        redisReply *r = NULL;
        if (p2m_sentinel_ask(a, i, timeout_ms, &primary, why) != 0)
            continue;
        p2m_hostport_format(primary.host, primary.port, hp, sizeof(hp));
        p2m_hostport_format(a->sentinels[i].host, a->sentinels[i].port, shp, sizeof(shp));
        snprintf(where, wcap, "redis %s via sentinel %s", hp, shp);
        char step[P2M_ERR_LEN] = "";
        if ((rc = connect_tcp(primary.host, primary.port, timeout_ms, step)) != NULL &&
            (a->password[0] == '\0' || auth(rc, a->user, a->password, step) == 0)) {
            const char *argv[] = {"ROLE"};
            r = redisCommandArgv(rc, 1, argv, NULL);
            if (r == NULL)
                p2m_err(step, "ROLE: %s", rc->errstr[0] ? rc->errstr : "connection lost");
            else
                p2m_sentinel_role_reply(r, step);
        }
        freeReplyObject(r);
        if (step[0] == '\0')
            return rc;
        p2m_err(why, "%s: %s", where, step);
        if (rc != NULL)
            redisFree(rc);
        rc = NULL;
    }
    snprintf(where, wcap, "redis sentinel master %s", a->master);
    p2m_err(err, "no sentinel of %u named a primary for %s that answers (last: %.160s)", a->nsentinels, a->master, why);
    return NULL;
}

/* TSIG key files and RFC 2136 updates through ldns: see p2m/dnsupd.h. */

#include "p2m/dnsupd.h"
#include "p2m/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ldns/ldns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- key file parser */

/* A cursor over the file's text; line counts from 1 for errors. */
struct lexer {
    const char *s;
    size_t len, pos;
    unsigned line;
};

enum tok_kind { TOK_END, TOK_WORD, TOK_STRING, TOK_LBRACE, TOK_RBRACE, TOK_SEMI, TOK_BAD };

struct token {
    enum tok_kind kind;
    const char *p; /* for WORD and STRING: the text, without quotes */
    size_t len;
};

/* Skips blanks and comments (#..., //..., slash-star...star-slash). Returns -1 for an unclosed
 * block comment. */
static int skip_space(struct lexer *lx)
{
    while (lx->pos < lx->len) {
        char c = lx->s[lx->pos];
        if (c == '\n') {
            lx->line++;
            lx->pos++;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            lx->pos++;
        } else if (c == '#' || (c == '/' && lx->pos + 1 < lx->len && lx->s[lx->pos + 1] == '/')) {
            while (lx->pos < lx->len && lx->s[lx->pos] != '\n')
                lx->pos++;
        } else if (c == '/' && lx->pos + 1 < lx->len && lx->s[lx->pos + 1] == '*') {
            lx->pos += 2;
            for (;;) {
                if (lx->pos + 1 >= lx->len)
                    return -1;
                if (lx->s[lx->pos] == '*' && lx->s[lx->pos + 1] == '/') {
                    lx->pos += 2;
                    break;
                }
                if (lx->s[lx->pos] == '\n')
                    lx->line++;
                lx->pos++;
            }
        } else {
            break;
        }
    }
    return 0;
}

static int is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
           c == '+' || c == '/' || c == '=';
}

static struct token next_token(struct lexer *lx)
{
    struct token t = {TOK_BAD, NULL, 0};
    if (skip_space(lx) != 0)
        return t;
    if (lx->pos >= lx->len) {
        t.kind = TOK_END;
        return t;
    }
    char c = lx->s[lx->pos];
    switch (c) {
    case '{':
        t.kind = TOK_LBRACE;
        lx->pos++;
        return t;
    case '}':
        t.kind = TOK_RBRACE;
        lx->pos++;
        return t;
    case ';':
        t.kind = TOK_SEMI;
        lx->pos++;
        return t;
    case '"': {
        /* BIND allows no escapes that a key name or base64 would need: a quote ends the string,
         * and a newline or a backslash inside one is refused. */
        size_t start = ++lx->pos;
        while (lx->pos < lx->len && lx->s[lx->pos] != '"') {
            if (lx->s[lx->pos] == '\n' || lx->s[lx->pos] == '\\')
                return t;
            lx->pos++;
        }
        if (lx->pos >= lx->len)
            return t;
        t.kind = TOK_STRING;
        t.p = lx->s + start;
        t.len = lx->pos - start;
        lx->pos++;
        return t;
    }
    default:
        if (!is_word_char(c))
            return t;
        t.p = lx->s + lx->pos;
        while (lx->pos < lx->len && is_word_char(lx->s[lx->pos]))
            lx->pos++;
        t.kind = TOK_WORD;
        t.len = (size_t)(lx->s + lx->pos - t.p);
        return t;
    }
}

static int tok_is(const struct token *t, const char *word)
{
    return t->kind == TOK_WORD && t->len == strlen(word) && strncasecmp(t->p, word, t->len) == 0;
}

/* A key name: dot-separated labels of [A-Za-z0-9_-], 1-63 bytes each, 253 in all; one final dot
 * is allowed and dropped. */
static int key_name_valid(const char *s, size_t len)
{
    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > P2M_DNS_NAME_MAX)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return label > 0;
}

/* Canonical base64 (RFC 4648 4): groups of four, '=' padding only at the end, and at least one
 * byte decoded. */
static int base64_valid(const char *s, size_t len)
{
    if (len == 0 || len % 4 != 0 || len > P2M_TSIG_SECRET_MAX)
        return 0;
    size_t pad = 0;
    if (s[len - 1] == '=')
        pad = s[len - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < len - pad; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '/'))
            return 0;
    }
    return len / 4 * 3 - pad > 0;
}

static const char *const algorithms[] = {"hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512"};

int p2m_tsig_key_parse(const char *s, size_t len, p2m_tsig_key_t *out, char *err)
{
    struct lexer lx = {s, len, 0, 1};
    struct token t;
    int have_alg = 0, have_secret = 0;
    const char *stmt = NULL; /* the statement a ";" must end, for the error */

    memset(out, 0, sizeof(*out));
    if (s == NULL || memchr(s, '\0', len) != NULL) {
        p2m_err(err, "tsig key: NUL byte in the file");
        goto Fail;
    }
    t = next_token(&lx);
    if (!tok_is(&t, "key")) {
        p2m_err(err, "tsig key: line %u: expected key \"NAME\" { ... };", lx.line);
        goto Fail;
    }
    t = next_token(&lx);
    if ((t.kind != TOK_STRING && t.kind != TOK_WORD) || !key_name_valid(t.p, t.len)) {
        p2m_err(err, "tsig key: line %u: expected a key name (a domain name)", lx.line);
        goto Fail;
    }
    memcpy(out->name, t.p, t.len);
    if (out->name[t.len - 1] == '.')
        out->name[t.len - 1] = '\0';
    t = next_token(&lx);
    if (t.kind != TOK_LBRACE) {
        p2m_err(err, "tsig key: line %u: expected { after the key name", lx.line);
        goto Fail;
    }
    for (;;) {
        t = next_token(&lx);
        if (t.kind == TOK_RBRACE)
            break;
        if (tok_is(&t, "algorithm")) {
            stmt = "algorithm";
            if (have_alg++) {
                p2m_err(err, "tsig key: line %u: algorithm given twice", lx.line);
                goto Fail;
            }
            t = next_token(&lx);
            size_t n = t.len;
            if ((t.kind == TOK_WORD || t.kind == TOK_STRING) && n > 0 && t.p[n - 1] == '.')
                n--; /* hmac-sha256. as a domain name */
            const char *found = NULL;
            for (size_t i = 0; (t.kind == TOK_WORD || t.kind == TOK_STRING) && i < sizeof(algorithms) / sizeof(algorithms[0]); i++)
                if (n == strlen(algorithms[i]) && strncasecmp(t.p, algorithms[i], n) == 0)
                    found = algorithms[i];
            if (found == NULL) {
                p2m_err(err, "tsig key: line %u: algorithm must be hmac-sha1, hmac-sha256, hmac-sha384 or hmac-sha512", lx.line);
                goto Fail;
            }
            snprintf(out->algorithm, sizeof(out->algorithm), "%s", found);
        } else if (tok_is(&t, "secret")) {
            stmt = "secret";
            if (have_secret++) {
                p2m_err(err, "tsig key: line %u: secret given twice", lx.line);
                goto Fail;
            }
            t = next_token(&lx);
            if (t.kind != TOK_STRING || !base64_valid(t.p, t.len)) {
                p2m_err(err, "tsig key: line %u: secret must be a quoted base64 string of at most %d characters", lx.line,
                        P2M_TSIG_SECRET_MAX);
                goto Fail;
            }
            memcpy(out->secret, t.p, t.len);
        } else {
            p2m_err(err, "tsig key: line %u: expected algorithm, secret or }", lx.line);
            goto Fail;
        }
        t = next_token(&lx);
        if (t.kind != TOK_SEMI) {
            p2m_err(err, "tsig key: line %u: expected ; after the %s", lx.line, stmt);
            goto Fail;
        }
    }
    if (!have_alg || !have_secret) {
        p2m_err(err, "tsig key: line %u: the key needs %s", lx.line, have_alg ? "a secret" : "an algorithm");
        goto Fail;
    }
    t = next_token(&lx);
    if (t.kind != TOK_SEMI) {
        p2m_err(err, "tsig key: line %u: expected ; after }", lx.line);
        goto Fail;
    }
    t = next_token(&lx);
    if (t.kind != TOK_END) {
        p2m_err(err, "tsig key: line %u: expected one key statement and nothing after it", lx.line);
        goto Fail;
    }
    return 0;

Fail:
    p2m_tsig_key_clear(out);
    return -1;
}

void p2m_tsig_key_clear(p2m_tsig_key_t *key)
{
    explicit_bzero(key, sizeof(*key));
}

int p2m_tsig_key_load(const char *path, p2m_tsig_key_t *out, char *err)
{
    char buf[P2M_TSIG_FILE_MAX + 1];
    struct stat st;
    ssize_t n = 0;
    size_t len = 0;
    int fd = -1, rc = -1;

    memset(out, 0, sizeof(*out));
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
        p2m_err(err, "%s: %s", path, strerror(errno));
        goto Exit;
    }
    if (fstat(fd, &st) != 0) {
        p2m_err(err, "%s: %s", path, strerror(errno));
        goto Exit;
    }
    if (!S_ISREG(st.st_mode)) {
        p2m_err(err, "%s: not a regular file", path);
        goto Exit;
    }
    /* The secret lets anyone rewrite the zone: a key others may read is refused, as sshd does. */
    if ((st.st_mode & 077) != 0) {
        p2m_err(err, "%s: mode %04o lets group or others read it; chmod 600", path, (unsigned)(st.st_mode & 07777));
        goto Exit;
    }
    if (st.st_size > P2M_TSIG_FILE_MAX) {
        p2m_err(err, "%s: larger than %d bytes", path, P2M_TSIG_FILE_MAX);
        goto Exit;
    }
    while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
        len += (size_t)n;
    if (n < 0) {
        p2m_err(err, "%s: %s", path, strerror(errno));
        goto Exit;
    }
    if (len > P2M_TSIG_FILE_MAX) {
        p2m_err(err, "%s: larger than %d bytes", path, P2M_TSIG_FILE_MAX);
        goto Exit;
    }
    char perr[P2M_ERR_LEN];
    if (p2m_tsig_key_parse(buf, len, out, perr) != 0) {
        p2m_err(err, "%s: %s", path, perr);
        goto Exit;
    }
    rc = 0;

Exit:
    explicit_bzero(buf, sizeof(buf));
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ---------------------------------------------------------------- updates and lookups */

/* The TSIG error field of a reply (RFC 8945 4.2: BADSIG 16, BADKEY 17, BADTIME 18), or 0. */
static unsigned tsig_error(const ldns_pkt *reply)
{
    const ldns_rr *tsig = ldns_pkt_tsig(reply);
    if (tsig == NULL || ldns_rr_rd_count(tsig) < 6)
        return 0;
    return ldns_rdf2native_int16(ldns_rr_rdf(tsig, 5));
}

static const char *tsig_error_name(unsigned e)
{
    switch (e) {
    case 16:
        return "BADSIG";
    case 17:
        return "BADKEY";
    case 18:
        return "BADTIME";
    case 22:
        return "BADTRUNC";
    default:
        return "error";
    }
}

/* Sends query (already signed when key != NULL) to the server and waits for its reply, over UDP
 * and again over TCP when the reply is truncated. ldns_resolver_send_pkt would do this, but it
 * drops the reply when its TSIG does not verify, and a server that refuses a key answers unsigned:
 * the RCODE that says why (NOTAUTH) would be lost. So the exchange is ours and the check follows
 * RFC 8945 5.3: an error RCODE is reported as it is, a NOERROR must verify. Returns 0 with *reply,
 * or -1 with "WHAT: REASON". */
static int exchange(const p2m_dnsupd_conf_t *conf, ldns_pkt *query, const char *what, ldns_pkt **reply, char *err)
{
    unsigned ms = conf->timeout_ms ? conf->timeout_ms : 3000;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    struct sockaddr_storage to;
    socklen_t tolen;
    ldns_buffer *qbin = NULL;
    uint8_t *wire = NULL;
    size_t wlen = 0;
    ldns_status st;
    int rc = -1;

    *reply = NULL;
    memset(&to, 0, sizeof(to));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&to;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&to;
    if (inet_pton(AF_INET, conf->server.host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(conf->server.port);
        tolen = sizeof(*s4);
    } else if (inet_pton(AF_INET6, conf->server.host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(conf->server.port);
        tolen = sizeof(*s6);
    } else {
        return p2m_err(err, "%s: dns server must be an IPv4 or IPv6 address", what);
    }
    if ((qbin = ldns_buffer_new(LDNS_MIN_BUFLEN)) == NULL || ldns_pkt2buffer_wire(qbin, query) != LDNS_STATUS_OK) {
        p2m_err(err, "%s: cannot encode the message", what);
        goto Exit;
    }
    st = ldns_udp_send(&wire, qbin, &to, tolen, tv, &wlen);
    if (st == LDNS_STATUS_OK && wlen >= LDNS_HEADER_SIZE && LDNS_TC_WIRE(wire)) {
        LDNS_FREE(wire);
        wire = NULL;
        st = ldns_tcp_send(&wire, qbin, &to, tolen, tv, &wlen);
    }
    if (st != LDNS_STATUS_OK || wire == NULL) {
        p2m_err(err, "%s: no answer within %u ms (%s)", what, ms, ldns_get_errorstr_by_id(st));
        goto Exit;
    }
    if (ldns_wire2pkt(reply, wire, wlen) != LDNS_STATUS_OK) {
        p2m_err(err, "%s: malformed reply", what);
        goto Exit;
    }
    if (ldns_pkt_id(*reply) != ldns_pkt_id(query) || !ldns_pkt_qr(*reply)) {
        p2m_err(err, "%s: reply with another id", what);
        goto Exit;
    }
    ldns_pkt_rcode rcode = ldns_pkt_get_rcode(*reply);
    if (rcode != LDNS_RCODE_NOERROR && !(rcode == LDNS_RCODE_NXDOMAIN && ldns_pkt_get_opcode(query) == LDNS_PACKET_QUERY)) {
        ldns_lookup_table *lt = ldns_lookup_by_id(ldns_rcodes, (int)rcode);
        unsigned te = tsig_error(*reply);
        if (te != 0)
            p2m_err(err, "%s: %s (TSIG %s)", what, lt != NULL ? lt->name : "unknown RCODE", tsig_error_name(te));
        else
            p2m_err(err, "%s: %s", what, lt != NULL ? lt->name : "unknown RCODE");
        goto Exit;
    }
    if (ldns_pkt_tsig(query) != NULL) {
        char name[P2M_DNS_NAME_MAX + 2];
        snprintf(name, sizeof(name), "%s.", conf->key->name);
        if (!ldns_pkt_tsig_verify(*reply, wire, wlen, name, conf->key->secret, ldns_rr_rdf(ldns_pkt_tsig(query), 3))) {
            p2m_err(err, "%s: the reply's TSIG does not verify with our key", what);
            goto Exit;
        }
    }
    rc = 0;

Exit:
    if (rc != 0) {
        ldns_pkt_free(*reply);
        *reply = NULL;
    }
    LDNS_FREE(wire);
    ldns_buffer_free(qbin);
    return rc;
}

int p2m_dnsupd_key_check(const p2m_tsig_key_t *key, char *err)
{
    /* ldns 1.8.3 spells its HMAC-SHA384 name "hmac-shac384." (tsig.c), so it cannot sign with
     * hmac-sha384, and it leaks the half-built TSIG record when it fails. */
    if (strcmp(key->algorithm, "hmac-sha384") == 0)
        return p2m_err(err, "tsig key %s: ldns cannot sign with hmac-sha384; use hmac-sha256 or hmac-sha512", key->name);
    return 0;
}

/* name is inside zone (or is it): both as ldns dnames. */
static int in_zone(const ldns_rdf *name, const ldns_rdf *zone)
{
    return ldns_dname_compare(name, zone) == 0 || ldns_dname_is_subdomain(name, zone);
}

/* Parses a text name into an absolute dname, refusing what is not a plain host name. */
static ldns_rdf *dname_new(const char *s)
{
    size_t len = s != NULL ? strnlen(s, P2M_DNS_NAME_MAX + 2) : 0;
    if (len == 0 || len > P2M_DNS_NAME_MAX + 1 || !key_name_valid(s, len))
        return NULL;
    return ldns_dname_new_frm_str(s);
}

/* An update-section RR with no data: "delete this RRset" (class ANY, RFC 2136 2.5.2). */
static ldns_rr *rrset_delete_new(const ldns_rdf *owner, ldns_rr_type type)
{
    ldns_rr *rr = ldns_rr_new();
    if (rr == NULL)
        return NULL;
    ldns_rr_set_owner(rr, ldns_rdf_clone(owner));
    ldns_rr_set_type(rr, type);
    ldns_rr_set_class(rr, LDNS_RR_CLASS_ANY);
    ldns_rr_set_ttl(rr, 0);
    return rr;
}

int p2m_dnsupd_replace(const p2m_dnsupd_conf_t *conf, const char *name, const char *const *addrs, size_t naddrs, uint32_t ttl,
                       char *err)
{
    ldns_rdf *zone = NULL, *owner = NULL;
    ldns_rr_list *up = NULL;
    ldns_pkt *pkt = NULL, *reply = NULL;
    char what[P2M_DNS_NAME_MAX + 32];
    int rc = -1;

    snprintf(what, sizeof(what), "dns update of %s", name != NULL && strlen(name) <= P2M_DNS_NAME_MAX ? name : "(bad name)");
    if ((zone = dname_new(conf->zone)) == NULL) {
        p2m_err(err, "dns zone: not a domain name");
        goto Exit;
    }
    if ((owner = dname_new(name)) == NULL || !in_zone(owner, zone)) {
        p2m_err(err, "%s: not a name in zone %s", what, conf->zone);
        goto Exit;
    }
    if (naddrs > P2M_DNSUPD_ADDRS_MAX || ttl > 0x7fffffff) {
        p2m_err(err, "%s: more than %d addresses or a TTL above 2^31-1", what, P2M_DNSUPD_ADDRS_MAX);
        goto Exit;
    }
    if ((up = ldns_rr_list_new()) == NULL)
        goto Oom;
    ldns_rr *del_a = rrset_delete_new(owner, LDNS_RR_TYPE_A), *del_aaaa = rrset_delete_new(owner, LDNS_RR_TYPE_AAAA);
    if (del_a == NULL || del_aaaa == NULL) {
        ldns_rr_free(del_a);
        ldns_rr_free(del_aaaa);
        goto Oom;
    }
    ldns_rr_list_push_rr(up, del_a);
    ldns_rr_list_push_rr(up, del_aaaa);
    for (size_t i = 0; i < naddrs; i++) {
        struct in6_addr a;
        ldns_rr_type type;
        ldns_rdf_type rdt;
        if (inet_pton(AF_INET, addrs[i], &a) == 1) {
            type = LDNS_RR_TYPE_A;
            rdt = LDNS_RDF_TYPE_A;
        } else if (inet_pton(AF_INET6, addrs[i], &a) == 1) {
            type = LDNS_RR_TYPE_AAAA;
            rdt = LDNS_RDF_TYPE_AAAA;
        } else {
            p2m_err(err, "%s: address %zu is not an IPv4 or IPv6 address", what, i + 1);
            goto Exit;
        }
        ldns_rr *rr = ldns_rr_new_frm_type(type);
        ldns_rdf *rd = ldns_rdf_new_frm_str(rdt, addrs[i]);
        if (rr == NULL || rd == NULL) {
            ldns_rr_free(rr);
            ldns_rdf_deep_free(rd);
            goto Oom;
        }
        ldns_rr_set_owner(rr, ldns_rdf_clone(owner));
        ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
        ldns_rr_set_ttl(rr, ttl);
        ldns_rr_set_rdf(rr, rd, 0);
        ldns_rr_list_push_rr(up, rr);
    }
    /* ldns_update_pkt_new takes the zone (even when it fails) and copies the lists. */
    pkt = ldns_update_pkt_new(zone, LDNS_RR_CLASS_IN, NULL, up, NULL);
    zone = NULL;
    if (pkt == NULL)
        goto Oom;
    /* It sets RD, which an UPDATE does not have (RFC 2136 2.2: Z, zero). */
    ldns_pkt_set_rd(pkt, false);
    ldns_pkt_set_random_id(pkt);
    if (conf->key != NULL && p2m_dnsupd_key_check(conf->key, err) != 0)
        goto Exit;
    if (conf->key != NULL) {
        /* ldns wants the names as domain names (final dot) and the secret in base64; 300 s of
         * fudge is what nsupdate and ldns's resolver use. */
        char kname[P2M_DNS_NAME_MAX + 2], alg[P2M_TSIG_ALG_MAX + 2];
        snprintf(kname, sizeof(kname), "%s.", conf->key->name);
        snprintf(alg, sizeof(alg), "%s.", conf->key->algorithm);
        if (ldns_pkt_tsig_sign(pkt, kname, conf->key->secret, 300, alg, NULL) != LDNS_STATUS_OK) {
            p2m_err(err, "%s: cannot sign with key %s", what, conf->key->name);
            goto Exit;
        }
    }
    rc = exchange(conf, pkt, what, &reply, err);
    goto Exit;

Oom:
    p2m_err(err, "%s: out of memory", what);
Exit:
    ldns_pkt_free(reply);
    ldns_pkt_free(pkt);
    ldns_rr_list_deep_free(up);
    ldns_rdf_deep_free(zone);
    ldns_rdf_deep_free(owner);
    return rc;
}

int p2m_dnsupd_delete(const p2m_dnsupd_conf_t *conf, const char *name, char *err)
{
    return p2m_dnsupd_replace(conf, name, NULL, 0, 0, err);
}

int p2m_dnsupd_lookup(const p2m_dnsupd_conf_t *conf, const char *name, char (*addrs)[INET6_ADDRSTRLEN], size_t cap, size_t *n,
                      uint32_t *ttl, char *err)
{
    static const ldns_rr_type types[] = {LDNS_RR_TYPE_A, LDNS_RR_TYPE_AAAA};
    ldns_rdf *owner = NULL;
    char what[P2M_DNS_NAME_MAX + 32];
    int rc = -1;

    *n = 0;
    *ttl = 0;
    snprintf(what, sizeof(what), "dns lookup of %s", name != NULL && strlen(name) <= P2M_DNS_NAME_MAX ? name : "(bad name)");
    if ((owner = dname_new(name)) == NULL) {
        p2m_err(err, "%s: not a domain name", what);
        goto Exit;
    }
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        ldns_pkt *q = ldns_pkt_query_new(ldns_rdf_clone(owner), types[t], LDNS_RR_CLASS_IN, 0), *reply = NULL;
        if (q == NULL) {
            p2m_err(err, "%s: out of memory", what);
            goto Exit;
        }
        ldns_pkt_set_random_id(q);
        int bad = exchange(conf, q, what, &reply, err); /* NXDOMAIN: no addresses */
        ldns_rr_list *ans = bad ? NULL : ldns_pkt_answer(reply);
        for (size_t i = 0; ans != NULL && i < ldns_rr_list_rr_count(ans); i++) {
            ldns_rr *rr = ldns_rr_list_rr(ans, i);
            /* Only records of the name itself: a CNAME chain's targets are someone else's. */
            if (ldns_rr_get_type(rr) != types[t] || ldns_dname_compare(ldns_rr_owner(rr), owner) != 0 || ldns_rr_rd_count(rr) < 1)
                continue;
            const ldns_rdf *rd = ldns_rr_rdf(rr, 0);
            int af = types[t] == LDNS_RR_TYPE_A ? AF_INET : AF_INET6;
            size_t want = af == AF_INET ? 4 : 16;
            if (ldns_rdf_size(rd) != want)
                continue;
            if (*n < cap && inet_ntop(af, ldns_rdf_data(rd), addrs[*n], INET6_ADDRSTRLEN) != NULL) {
                if (*n == 0 || ldns_rr_ttl(rr) < *ttl)
                    *ttl = ldns_rr_ttl(rr);
                (*n)++;
            }
        }
        ldns_pkt_free(reply);
        ldns_pkt_free(q);
        if (bad)
            goto Exit;
    }
    rc = 0;

Exit:
    ldns_rdf_deep_free(owner);
    return rc;
}

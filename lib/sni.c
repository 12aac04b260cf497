#include "p2m/sni.h"
#include "p2m/err.h"

#include <string.h>

#define RECORD_HEADER 5      /* content type, version (2), length (2) */
#define RECORD_MAX 16384     /* RFC 8446 5.1: a TLSPlaintext fragment is at most 2^14 bytes */
#define HANDSHAKE_HEADER 4   /* msg_type, length (3) */
#define CONTENT_HANDSHAKE 22 /* RFC 8446 B.1 */
#define HANDSHAKE_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0 /* RFC 6066 3 */
#define NAME_TYPE_HOST 0  /* RFC 6066 3: host_name */
#define SESSION_ID_MAX 32 /* RFC 8446 4.1.2: legacy_session_id<0..32> */
#define DNS_LABEL_MAX 63

/* A bounded reader over bytes already known to be there: every read checks what is left first. */
typedef struct {
    const uint8_t *p;
    size_t left;
} reader_t;

static int read_u8(reader_t *r, size_t *v)
{
    if (r->left < 1)
        return -1;
    *v = r->p[0];
    r->p++;
    r->left--;
    return 0;
}

static int read_u16(reader_t *r, size_t *v)
{
    if (r->left < 2)
        return -1;
    *v = (size_t)r->p[0] << 8 | r->p[1];
    r->p += 2;
    r->left -= 2;
    return 0;
}

/* Moves n bytes of r into *sub (a reader of its own) and past them. */
static int read_sub(reader_t *r, size_t n, reader_t *sub)
{
    if (r->left < n)
        return -1;
    sub->p = r->p;
    sub->left = n;
    r->p += n;
    r->left -= n;
    return 0;
}

/* A length-prefixed vector (a prefix of `width` bytes, 1 or 2) into *sub. */
static int read_vec(reader_t *r, int width, reader_t *sub)
{
    size_t n;
    if ((width == 1 ? read_u8(r, &n) : read_u16(r, &n)) != 0)
        return -1;
    return read_sub(r, n, sub);
}

/* Checks a host_name and writes it, lower-cased and without a trailing dot, to name. RFC 6066
 * says "without a trailing dot", but clients pass through what they were given; a browser strips
 * it, curl and OpenSSL do not, and a name routes the same with it. */
static int host_name(const uint8_t *s, size_t len, char *name, char *err)
{
    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0)
        return p2m_err(err, "server_name: empty host_name");
    if (len > P2M_SNI_NAME_MAX)
        return p2m_err(err, "server_name: host_name of %zu bytes is longer than %d", len, P2M_SNI_NAME_MAX);
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i];
        if (c == '.') {
            if (label == 0)
                return p2m_err(err, "server_name: empty label at byte %zu of host_name", i);
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
            label++;
        } else if (c >= 'A' && c <= 'Z') {
            c = (uint8_t)(c - 'A' + 'a');
            label++;
        } else {
            return p2m_err(err, "server_name: byte 0x%02x at %zu of host_name is not a letter, digit, '-' or '.'", c, i);
        }
        if (label > DNS_LABEL_MAX)
            return p2m_err(err, "server_name: label longer than %d bytes in host_name", DNS_LABEL_MAX);
        name[i] = (char)c;
    }
    if (label == 0)
        return p2m_err(err, "server_name: host_name ends in an empty label");
    name[len] = '\0';
    return 0;
}

/* The server_name extension's body (RFC 6066 3): a non-empty ServerNameList, each entry a
 * name_type and a 2-byte length. Only host_name entries count, at most one. Sets *found. */
static int server_name(reader_t ext, char *name, int *found, char *err)
{
    reader_t list;
    if (read_vec(&ext, 2, &list) != 0 || ext.left != 0)
        return p2m_err(err, "server_name: list length does not match the extension's");
    if (list.left == 0)
        return p2m_err(err, "server_name: empty list");
    while (list.left > 0) {
        size_t type;
        reader_t entry;
        if (read_u8(&list, &type) != 0 || read_vec(&list, 2, &entry) != 0)
            return p2m_err(err, "server_name: entry overruns the list");
        if (type != NAME_TYPE_HOST)
            continue;
        if (*found)
            return p2m_err(err, "server_name: more than one host_name");
        if (host_name(entry.p, entry.left, name, err) != 0)
            return -1;
        *found = 1;
    }
    return 0;
}

/* The body of a complete ClientHello (RFC 8446 4.1.2, RFC 5246 7.4.1.2), after its 4-byte
 * handshake header. */
static p2m_sni_status_t client_hello(reader_t r, char *name, char *err)
{
    reader_t v, exts;

    if (read_sub(&r, 2 + 32, &v) != 0) /* legacy_version, random: what the server decides on, not us */
        goto Short;
    if (read_vec(&r, 1, &v) != 0)
        goto Short;
    if (v.left > SESSION_ID_MAX) {
        p2m_err(err, "ClientHello: session id of %zu bytes is longer than %d", v.left, SESSION_ID_MAX);
        return P2M_SNI_INVALID;
    }
    if (read_vec(&r, 2, &v) != 0)
        goto Short;
    if (v.left < 2 || v.left % 2 != 0) {
        p2m_err(err, "ClientHello: cipher suites of %zu bytes (expected an even number, at least 2)", v.left);
        return P2M_SNI_INVALID;
    }
    if (read_vec(&r, 1, &v) != 0)
        goto Short;
    if (v.left < 1) {
        p2m_err(err, "ClientHello: no compression methods");
        return P2M_SNI_INVALID;
    }
    if (r.left == 0)
        return P2M_SNI_NONE; /* RFC 5246 7.4.1.2: a ClientHello may end before the extensions */
    if (read_vec(&r, 2, &exts) != 0 || r.left != 0) {
        p2m_err(err, "ClientHello: extensions length does not match the message's");
        return P2M_SNI_INVALID;
    }

    /* RFC 8446 4.2: no two extensions of one type. One bit per type: a hello has up to 4096 of
     * them, too many to compare pairwise at every peek. */
    uint64_t seen[65536 / 64];
    memset(seen, 0, sizeof(seen));
    int found = 0;
    while (exts.left > 0) {
        size_t type;
        reader_t ext;
        if (read_u16(&exts, &type) != 0 || read_vec(&exts, 2, &ext) != 0) {
            p2m_err(err, "ClientHello: extension overruns the extensions block");
            return P2M_SNI_INVALID;
        }
        if (seen[type / 64] >> (type % 64) & 1) {
            p2m_err(err, "ClientHello: extension %zu appears twice", type);
            return P2M_SNI_INVALID;
        }
        seen[type / 64] |= (uint64_t)1 << (type % 64);
        if (type == EXT_SERVER_NAME && server_name(ext, name, &found, err) != 0)
            return P2M_SNI_INVALID;
    }
    return found ? P2M_SNI_FOUND : P2M_SNI_NONE;

Short:
    p2m_err(err, "ClientHello: shorter than its fields");
    return P2M_SNI_INVALID;
}

/* Checks the record header bytes present at h[0..n) (n <= 5), so that a prefix is refused as soon
 * as its first wrong byte arrives: a plain HTTP request is INVALID after one byte. */
static int record_header(const uint8_t *h, size_t n, size_t at, char *err)
{
    if (n >= 1 && h[0] != CONTENT_HANDSHAKE) {
        if (at > 0)
            return p2m_err(err, "TLS record: content type %u at byte %zu before the ClientHello is complete", h[0], at);
        if (h[0] & 0x80)
            return p2m_err(err, "TLS record: SSLv2-compatible hello (first byte 0x%02x)", h[0]);
        return p2m_err(err, "TLS record: first byte 0x%02x is not a handshake record (22)", h[0]);
    }
    if (n >= 3 && (h[1] != 3 || h[2] < 1 || h[2] > 4))
        return p2m_err(err, "TLS record: version 0x%02x%02x at byte %zu (expected 0x0301-0x0304)", h[1], h[2], at);
    if (n == 2 && h[1] != 3)
        return p2m_err(err, "TLS record: version 0x%02x.. at byte %zu (expected 0x0301-0x0304)", h[1], at);
    if (n >= 5) {
        size_t len = (size_t)h[3] << 8 | h[4];
        if (len == 0 || len > RECORD_MAX)
            return p2m_err(err, "TLS record: length %zu at byte %zu (expected 1-%d)", len, at, RECORD_MAX);
    }
    return 0;
}

p2m_sni_status_t p2m_sni_parse(const uint8_t *buf, size_t len, char *name, char *err)
{
    /* The handshake bytes, gathered from the records: in place while one record holds them all (the
     * usual case), copied here once a second record is needed. Records carry at least one byte of
     * payload after a 5-byte header, so the handshake bytes never outnumber the bytes looked at. */
    uint8_t copy[P2M_SNI_PEEK_MAX];
    const uint8_t *hs = NULL;
    size_t have = 0; /* handshake bytes gathered */
    size_t need = 0; /* the whole ClientHello with its header, once its length has arrived */
    size_t n = len < P2M_SNI_PEEK_MAX ? len : P2M_SNI_PEEK_MAX;
    size_t pos = 0;

    name[0] = '\0';
    if (n == 0)
        return P2M_SNI_NEED_MORE; /* and buf may be NULL */
    while (need == 0 || have < need) {
        if (n - pos < RECORD_HEADER) {
            if (record_header(buf + pos, n - pos, pos, err) != 0)
                return P2M_SNI_INVALID;
            goto Incomplete;
        }
        if (record_header(buf + pos, RECORD_HEADER, pos, err) != 0)
            return P2M_SNI_INVALID;
        size_t rlen = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
        size_t avail = n - pos - RECORD_HEADER;
        size_t take = avail < rlen ? avail : rlen;
        size_t before = have;
        const uint8_t *payload = buf + pos + RECORD_HEADER;
        if (pos == 0) {
            hs = payload;
        } else {
            if (hs != copy) {
                memcpy(copy, hs, have);
                hs = copy;
            }
            memcpy(copy + have, payload, take);
        }
        have += take;

        if (have >= 1 && hs[0] != HANDSHAKE_CLIENT_HELLO) {
            p2m_err(err, "handshake: message type %u (expected 1, ClientHello)", hs[0]);
            return P2M_SNI_INVALID;
        }
        if (need == 0 && have >= HANDSHAKE_HEADER) {
            need = HANDSHAKE_HEADER + ((size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3]);
            if (need == HANDSHAKE_HEADER) {
                p2m_err(err, "handshake: empty ClientHello");
                return P2M_SNI_INVALID;
            }
        }
        /* This record's header is here, so the ClientHello can end no earlier than its remaining
         * bytes after it: refuse now what cannot end within the first P2M_SNI_PEEK_MAX bytes rather
         * than wait for them. */
        if (need != 0 && pos + RECORD_HEADER + (need - before) > P2M_SNI_PEEK_MAX) {
            p2m_err(err, "handshake: ClientHello of %zu bytes does not end within the first %d bytes", need - HANDSHAKE_HEADER,
                    P2M_SNI_PEEK_MAX);
            return P2M_SNI_INVALID;
        }
        if (need != 0 && have >= need)
            break; /* the rest of this record, if any, is not the ClientHello's */
        if (take < rlen)
            goto Incomplete;
        pos += RECORD_HEADER + rlen;
    }
    reader_t body = {hs + HANDSHAKE_HEADER, need - HANDSHAKE_HEADER};
    p2m_sni_status_t status = client_hello(body, name, err);
    if (status != P2M_SNI_FOUND)
        name[0] = '\0'; /* a refused second host_name follows a first one written there */
    return status;

Incomplete:
    if (n < P2M_SNI_PEEK_MAX)
        return P2M_SNI_NEED_MORE;
    p2m_err(err, "handshake: no complete ClientHello within the first %d bytes", P2M_SNI_PEEK_MAX);
    return P2M_SNI_INVALID;
}

const char *p2m_sni_status_name(p2m_sni_status_t status)
{
    switch (status) {
    case P2M_SNI_NEED_MORE:
        return "need_more";
    case P2M_SNI_FOUND:
        return "found";
    case P2M_SNI_NONE:
        return "none";
    case P2M_SNI_INVALID:
        return "invalid";
    }
    return "?";
}

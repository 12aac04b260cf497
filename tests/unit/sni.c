/* Unit tests for lib/sni.c against lib/include/p2m/sni.h: real ClientHellos written by OpenSSL
 * (memory BIOs, one SSL_connect, what it wrote read back) with and without a server name, TLS 1.0,
 * 1.2 and 1.3, large ones and ones OpenSSL fragments itself; every prefix of each; the same
 * handshake message re-split into records of every size; a table of hostile flights written in a
 * short notation (see assemble()); and the P2M_SNI_PEEK_MAX bound, one byte either side.
 *
 * `unit_sni --write-corpus DIR` also writes the OpenSSL hellos to DIR: that is how
 * tests/fuzz/corpus/sni/ was made. */

#include "check.h"
#include "p2m/err.h"
#include "p2m/sni.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/tls1.h>

#define FLIGHT_MAX 70000 /* room for a hello re-split into 1-byte records (6 bytes each) and more */

typedef struct {
    uint8_t b[FLIGHT_MAX];
    size_t n;
} flight_t;

static void die(const char *what)
{
    fprintf(stderr, "unit_sni: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    abort();
}

static void put(flight_t *f, uint8_t c)
{
    if (f->n >= FLIGHT_MAX)
        die("flight too long: put");
    f->b[f->n++] = c;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Assembles a flight from a notation that keeps hostile rows readable; aborts on a notation error
 * (a bug in this file).
 *   16 0301        hex pairs, spaces optional: bytes
 *   'text'         its bytes (no escapes: use hex)
 *   ATOM*N         the hex pair or 'text' just before, N times in all
 *   <..> {..} [..] a vector: its bytes with a 1, 2 or 3-byte big-endian length before them */
static void assemble(const char *s, flight_t *f)
{
    size_t open[16];
    int width[16], depth = 0;
    f->n = 0;
    while (*s != '\0') {
        size_t atom = f->n;
        const char *close = strchr(">}]", *s), *opener = strchr("<{[", *s);
        if (*s == ' ') {
            s++;
            continue;
        }
        if (opener != NULL && *s != '\0') {
            if (depth == 16)
                die("notation: nested too deep");
            width[depth] = (int)(opener - "<{[") + 1;
            open[depth++] = f->n;
            for (int i = 0; i < width[depth - 1]; i++)
                put(f, 0);
            s++;
            continue;
        }
        if (close != NULL && *s != '\0') {
            if (depth == 0 || width[depth - 1] != (int)(close - ">}]") + 1)
                die("notation: unbalanced");
            depth--;
            size_t at = open[depth], w = (size_t)width[depth], len = f->n - at - w;
            if (len >> (8 * w) != 0)
                die("notation: vector too long for its length");
            for (size_t i = 0; i < w; i++)
                f->b[at + i] = (uint8_t)(len >> (8 * (w - 1 - i)));
            s++;
            continue;
        }
        if (*s == '\'') {
            const char *end = strchr(s + 1, '\'');
            if (end == NULL)
                die("notation: unterminated text");
            for (s++; s < end; s++)
                put(f, (uint8_t)*s);
            s++;
        } else if (hex_digit(s[0]) >= 0 && hex_digit(s[1]) >= 0) {
            put(f, (uint8_t)(hex_digit(s[0]) << 4 | hex_digit(s[1])));
            s += 2;
        } else {
            die("notation: unexpected character");
        }
        if (*s == '*') {
            char *end;
            unsigned long times = strtoul(s + 1, &end, 10);
            size_t n = f->n - atom;
            if (end == s + 1 || times == 0)
                die("notation: bad repeat");
            for (unsigned long t = 1; t < times; t++)
                for (size_t i = 0; i < n; i++)
                    put(f, f->b[atom + i]);
            s = end;
        }
    }
    if (depth != 0)
        die("notation: unclosed vector");
}

/* Parses buf[0..len) from an exact heap copy, so that ASan sees any read past len. */
static p2m_sni_status_t parse(const uint8_t *buf, size_t len, char *name, char *err)
{
    uint8_t *in = (uint8_t *)check_exact_copy(buf, len);
    p2m_sni_status_t s = p2m_sni_parse(in, len, name, err);
    free(in);
    return s;
}

/* Checks the answer for the whole of buf: want, with want_text the name (FOUND) or what err
 * mentions (INVALID), and a printable one-line err. */
static void check_answer(const uint8_t *buf, size_t len, p2m_sni_status_t want, const char *want_text)
{
    char name[P2M_SNI_NAME_MAX + 1], err[P2M_ERR_LEN] = "";
    memset(name, 'x', sizeof(name));
    p2m_sni_status_t got = parse(buf, len, name, err);
    if (!CHECK_MSG(got == want, "expected %s, got %s (name %s, err %s)", p2m_sni_status_name(want), p2m_sni_status_name(got),
                   got == P2M_SNI_FOUND ? check_str(name) : "-", got == P2M_SNI_INVALID ? check_str(err) : "-"))
        return;
    if (!CHECK_MSG(memchr(name, '\0', sizeof(name)) != NULL, "name is not NUL-terminated"))
        return;
    if (want == P2M_SNI_FOUND)
        CHECK_EQ_STR(name, want_text);
    else
        CHECK_EQ_STR(name, "");
    if (want == P2M_SNI_INVALID) {
        if (want_text != NULL)
            CHECK_MSG(strstr(err, want_text) != NULL, "err %s does not mention %s", check_str(err), check_str(want_text));
        CHECK_MSG(err[0] != '\0', "no err for INVALID");
        for (const char *p = err; *p != '\0'; p++)
            if (!CHECK_MSG(*p >= 0x20 && *p < 0x7f, "err is not printable: %s", check_str(err)))
                break;
    }
}

/* Every strict prefix of buf: NEED_MORE until the first other answer, which is the whole input's
 * (want, and the same name) and stays; with exact, every strict prefix is NEED_MORE (buf ends
 * where the ClientHello does). A prefix of P2M_SNI_PEEK_MAX bytes or more is never NEED_MORE.
 * Every `step`th prefix only, and the last 2 * step, when checking all would be slow. */
static void check_prefixes(const uint8_t *buf, size_t len, p2m_sni_status_t want, const char *want_name, int exact, size_t step)
{
    char name[P2M_SNI_NAME_MAX + 1], err[P2M_ERR_LEN];
    p2m_sni_status_t first = P2M_SNI_NEED_MORE;
    size_t bad = 0;
    for (size_t p = 0; p < len; p++) {
        if (step > 1 && p % step != 0 && p + 2 * step < len)
            continue;
        err[0] = '\0';
        p2m_sni_status_t got = parse(buf, p, name, err);
        int ok;
        if (exact)
            ok = got == P2M_SNI_NEED_MORE;
        else if (first != P2M_SNI_NEED_MORE)
            ok = got == first;
        else
            ok = got == P2M_SNI_NEED_MORE || got == want;
        if (ok && got == P2M_SNI_FOUND)
            ok = strcmp(name, want_name) == 0;
        if (ok && p >= P2M_SNI_PEEK_MAX)
            ok = got != P2M_SNI_NEED_MORE;
        if (ok && first == P2M_SNI_NEED_MORE)
            first = got;
        if (!ok && bad++ < 3)
            CHECK_MSG(0, "prefix of %zu of %zu bytes: got %s (name %s, err %s); expected %s%s%s", p, len, p2m_sni_status_name(got),
                      got == P2M_SNI_FOUND ? check_str(name) : "-", check_str(err),
                      exact || first != P2M_SNI_NEED_MORE ? "" : "need_more or ",
                      p2m_sni_status_name(exact                        ? P2M_SNI_NEED_MORE
                                          : first != P2M_SNI_NEED_MORE ? first
                                                                       : want),
                      !exact && first != P2M_SNI_NEED_MORE ? " as a shorter prefix got" : "");
    }
    CHECK_MSG(bad == 0, "%zu bad prefixes of %zu", bad, len);
}

/* --- flights written by OpenSSL --------------------------------------------------------------- */

#define CUSTOM_EXT 0xfe77 /* unassigned: a custom extension of any size makes a large hello */
static uint8_t custom_data[20000];

static int add_custom(SSL *s, unsigned type, unsigned context, const unsigned char **out, size_t *outlen, X509 *x, size_t chainidx,
                      int *al, void *arg)
{
    (void)s, (void)type, (void)context, (void)x, (void)chainidx, (void)al;
    *out = custom_data;
    *outlen = *(const size_t *)arg;
    return 1;
}

struct client {
    const char *slug;        /* the seed's file name with --write-corpus */
    const char *server_name; /* SSL_set_tlsext_host_name; NULL: none */
    int version;             /* TLS1_2_VERSION etc.: the only version offered; 0: OpenSSL's range (1.2, 1.3) */
    int many;                /* ALPN, OCSP stapling, padding, more groups */
    size_t custom;           /* bytes of CUSTOM_EXT, 0: none */
    long fragment;           /* SSL_set_max_send_fragment; 0: default (16384) */
    p2m_sni_status_t want;
    const char *want_text; /* the name, or what err mentions */
};

/* Writes the first flight of a client configured as c into f. */
static void openssl_hello(const struct client *c, flight_t *f)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        die("SSL_CTX_new");
    if (c->version != 0) {
        if (c->version < TLS1_2_VERSION)
            SSL_CTX_set_security_level(ctx, 0); /* OpenSSL 3 offers TLS 1.0 only at level 0 */
        if (!SSL_CTX_set_min_proto_version(ctx, c->version) || !SSL_CTX_set_max_proto_version(ctx, c->version))
            die("SSL_CTX_set_min/max_proto_version");
    }
    if (c->custom > 0 &&
        !SSL_CTX_add_custom_ext(ctx, CUSTOM_EXT, SSL_EXT_CLIENT_HELLO, add_custom, NULL, (void *)&c->custom, NULL, NULL))
        die("SSL_CTX_add_custom_ext");
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (ssl == NULL || rb == NULL || wb == NULL)
        die("SSL_new/BIO_new");
    SSL_set_bio(ssl, rb, wb);
    if (c->server_name != NULL && !SSL_set_tlsext_host_name(ssl, c->server_name))
        die("SSL_set_tlsext_host_name");
    if (c->many) {
        static const unsigned char alpn[] = "\x02h2\x08http/1.1\x06spdy/3\x08http/1.0";
        if (SSL_set_alpn_protos(ssl, alpn, sizeof(alpn) - 1) != 0)
            die("SSL_set_alpn_protos");
        if (!SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp))
            die("SSL_set_tlsext_status_type");
        if (!SSL_set1_groups_list(ssl, "X25519:P-256:P-384:P-521:X448:ffdhe2048:ffdhe3072"))
            die("SSL_set1_groups_list");
        SSL_set_options(ssl, SSL_OP_TLSEXT_PADDING);
    }
    if (c->fragment != 0 && !SSL_set_max_send_fragment(ssl, c->fragment))
        die("SSL_set_max_send_fragment");
    SSL_set_connect_state(ssl);
    int rc = SSL_connect(ssl);
    if (rc != -1 || SSL_get_error(ssl, rc) != SSL_ERROR_WANT_READ)
        die("SSL_connect (expected it to wait for the server)");
    f->n = 0;
    for (int got; (got = BIO_read(wb, f->b + f->n, (int)(FLIGHT_MAX - f->n))) > 0;)
        f->n += (size_t)got;
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (f->n == 0)
        die("SSL_connect wrote nothing");
}

/* The handshake message at the start of a flight of handshake records, reassembled into msg.
 * Returns its length (header included), 0 when the flight does not hold one whole. */
static size_t handshake_message(const flight_t *f, flight_t *msg)
{
    msg->n = 0;
    for (size_t pos = 0; pos + 5 <= f->n && f->b[pos] == 22;) {
        size_t rlen = (size_t)f->b[pos + 3] << 8 | f->b[pos + 4];
        if (pos + 5 + rlen > f->n)
            return 0;
        memcpy(msg->b + msg->n, f->b + pos + 5, rlen);
        msg->n += rlen;
        pos += 5 + rlen;
        if (msg->n >= 4) {
            size_t need = 4 + ((size_t)msg->b[1] << 16 | (size_t)msg->b[2] << 8 | msg->b[3]);
            if (msg->n >= need) {
                msg->n = need;
                return need;
            }
        }
    }
    return 0;
}

/* msg as handshake records of at most `size` bytes each, versions 0x0301-0x0304 in turn. */
static void split_records(const flight_t *msg, size_t size, flight_t *out)
{
    out->n = 0;
    for (size_t at = 0, i = 0; at < msg->n; at += size, i++) {
        size_t n = msg->n - at < size ? msg->n - at : size;
        put(out, 22);
        put(out, 3);
        put(out, (uint8_t)(1 + i % 4));
        put(out, (uint8_t)(n >> 8));
        put(out, (uint8_t)n);
        for (size_t k = 0; k < n; k++)
            put(out, msg->b[at + k]);
    }
}

static flight_t flight, msg, split;
static const char *corpus_dir; /* --write-corpus */

static void write_seed(const char *slug, const char *suffix, const flight_t *f)
{
    if (corpus_dir == NULL)
        return;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s%s", corpus_dir, slug, suffix);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL || fwrite(f->b, 1, f->n, fp) != f->n || fclose(fp) != 0)
        die("writing the corpus");
}

/* The whole flight, every prefix, the flight with bytes after it, and the handshake message re-split
 * into records of every size. */
static void check_flight(const char *what, const flight_t *f, p2m_sni_status_t want, const char *want_text)
{
    int valid = want != P2M_SNI_INVALID;
    CHECK_CTX("%s (%zu bytes): whole", what, f->n);
    check_answer(f->b, f->n, want, want_text);
    CHECK_CTX("%s (%zu bytes): prefixes", what, f->n);
    check_prefixes(f->b, f->n, want, want_text, valid, 1);
    if (!valid)
        return;

    CHECK_CTX("%s: followed by an application data record and 20000 bytes", what);
    static flight_t more;
    memcpy(more.b, f->b, f->n);
    more.n = f->n;
    static const uint8_t app[] = {23, 3, 3, 0, 1, 0};
    memcpy(more.b + more.n, app, sizeof(app));
    more.n += sizeof(app);
    memset(more.b + more.n, 0xee, 20000);
    more.n += 20000;
    check_answer(more.b, more.n, want, want_text);

    if (handshake_message(f, &msg) == 0) {
        CHECK_MSG(0, "%s: no whole handshake message in the flight", what);
        return;
    }
    size_t sizes = 0;
    for (size_t size = 1; size <= msg.n; size++) {
        split_records(&msg, size, &split);
        CHECK_CTX("%s: %zu-byte message in records of %zu (%zu bytes)", what, msg.n, size, split.n);
        /* every record but the last carries `size` bytes: the ClientHello ends with the flight */
        check_answer(split.b, split.n, split.n <= P2M_SNI_PEEK_MAX ? want : P2M_SNI_INVALID,
                     split.n <= P2M_SNI_PEEK_MAX ? want_text : "within the first 16384 bytes");
        if (size == 100 && msg.n <= 1000) /* the large ones come fragmented already */
            write_seed(what, "_records_100", &split);
        if (size <= 5 || size == 100 || size == msg.n - 1)
            check_prefixes(split.b, split.n, split.n <= P2M_SNI_PEEK_MAX ? want : P2M_SNI_INVALID, want_text,
                           split.n <= P2M_SNI_PEEK_MAX, split.n > 4096 ? 7 : 1);
        sizes++;
    }
    CHECK_CTX(NULL);
    check_note("%s: %zu-byte flight, %zu-byte message re-split %zu ways", what, f->n, msg.n, sizes);
}

static char name253[254], name254_dot[256];

static const struct client clients[] = {
    {"tls13_mixed_case", "Demo.Pipe2Me.LocalHost", 0, 0, 0, 0, P2M_SNI_FOUND, "demo.pipe2me.localhost"},
    {"tls13_trailing_dot", "demo.pipe2me.localhost.", 0, 0, 0, 0, P2M_SNI_FOUND, "demo.pipe2me.localhost"},
    {"tls13_no_sni", NULL, 0, 0, 0, 0, P2M_SNI_NONE, NULL},
    {"tls12_sni", "handsome-lemon-panda.test.pipe2.me", TLS1_2_VERSION, 0, 0, 0, P2M_SNI_FOUND,
     "handsome-lemon-panda.test.pipe2.me"},
    {"tls12_no_sni", NULL, TLS1_2_VERSION, 0, 0, 0, P2M_SNI_NONE, NULL},
    {"tls10_sni", "old.example", TLS1_VERSION, 0, 0, 0, P2M_SNI_FOUND, "old.example"},
    {"tls13_many_ext", "demo.pipe2me.localhost", 0, 1, 0, 0, P2M_SNI_FOUND, "demo.pipe2me.localhost"},
    {"tls13_large", "Large.Example", 0, 1, 6000, 0, P2M_SNI_FOUND, "large.example"},
    {"tls13_fragmented_512", "frag.example", 0, 1, 9000, 512, P2M_SNI_FOUND, "frag.example"},
    {"tls12_fragmented_no_sni", NULL, TLS1_2_VERSION, 1, 3000, 512, P2M_SNI_NONE, NULL},
    {"tls13_name_253", name253, 0, 0, 0, 0, P2M_SNI_FOUND, name253},
    {"tls13_name_254_dot", name254_dot, 0, 0, 0, 0, P2M_SNI_FOUND, name253},
    {"tls13_over_16k", "big.example", 0, 0, 17000, 0, P2M_SNI_INVALID, "does not end within the first 16384 bytes"},
};

static void test_openssl(void)
{
    /* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 */
    memset(name253, 'a', 253);
    name253[63] = name253[127] = name253[191] = '.';
    name253[253] = '\0';
    snprintf(name254_dot, sizeof(name254_dot), "%s.", name253);
    for (size_t i = 0; i < sizeof(custom_data); i++)
        custom_data[i] = (uint8_t)i;

    for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++) {
        const struct client *c = &clients[i];
        openssl_hello(c, &flight);
        if (c->server_name != NULL) {
            /* what OpenSSL puts on the wire: the name as given, case and trailing dot kept */
            size_t n = strlen(c->server_name);
            int as_given = 0;
            for (size_t at = 0; at + n <= flight.n && !as_given; at++)
                as_given = memcmp(flight.b + at, c->server_name, n) == 0;
            CHECK_CTX("%s", c->slug);
            CHECK_MSG(as_given, "OpenSSL did not send %s as given", check_str(c->server_name));
        }
        write_seed(c->slug, "", &flight);
        check_flight(c->slug, &flight, c->want, c->want_text);
    }
    CHECK_CTX(NULL);
}

/* The P2M_SNI_PEEK_MAX bound, one byte either side: a hello whose single record ends at byte
 * 16384 is read, one a byte longer is refused, at every prefix of 16384 bytes or more, and so is
 * the same message in records that end past the bound. */
static void test_peek_max(void)
{
    struct client c = {"edge", "edge.example", 0, 0, 1000, 0, P2M_SNI_FOUND, "edge.example"};
    openssl_hello(&c, &flight);
    size_t base = flight.n;
    c.custom = 1000 + (P2M_SNI_PEEK_MAX - base);
    openssl_hello(&c, &flight);
    CHECK_CTX("hello of exactly %d bytes", P2M_SNI_PEEK_MAX);
    if (CHECK_EQ_INT(flight.n, P2M_SNI_PEEK_MAX)) {
        check_answer(flight.b, flight.n, P2M_SNI_FOUND, "edge.example");
        check_prefixes(flight.b, flight.n, P2M_SNI_FOUND, "edge.example", 1, 1);
    }

    c.custom++;
    openssl_hello(&c, &flight);
    CHECK_CTX("hello of %d bytes", P2M_SNI_PEEK_MAX + 1);
    if (CHECK_EQ_INT(flight.n, P2M_SNI_PEEK_MAX + 1)) {
        check_answer(flight.b, flight.n, P2M_SNI_INVALID, "does not end within the first 16384 bytes");
        check_answer(flight.b, P2M_SNI_PEEK_MAX, P2M_SNI_INVALID, "does not end within the first 16384 bytes");
        /* refused as soon as the handshake length has arrived, long before the bound */
        check_answer(flight.b, 9, P2M_SNI_INVALID, "does not end within the first 16384 bytes");
        check_answer(flight.b, 8, P2M_SNI_NEED_MORE, NULL);
        check_prefixes(flight.b, flight.n, P2M_SNI_INVALID, NULL, 0, 1);
    }

    /* The same hello 10 bytes shorter in records of 8000: three record headers instead of one, so
     * it ends at the bound again. */
    c.custom -= 11;
    openssl_hello(&c, &flight);
    handshake_message(&flight, &msg);
    split_records(&msg, 8000, &split);
    CHECK_CTX("%zu-byte message in records of 8000 (%zu bytes)", msg.n, split.n);
    if (CHECK_EQ_INT(split.n, P2M_SNI_PEEK_MAX))
        check_answer(split.b, split.n, P2M_SNI_FOUND, "edge.example");
    /* A ClientHello that would end at the bound in one record, in records of 16376 and 3: the
     * second header straddles the bound, so nothing but the bound itself decides. */
    assemble("01 [ 00*16375 ]", &msg);
    split_records(&msg, 16376, &split);
    CHECK_CTX("records of 16376 and 3 of a %zu-byte message (%zu bytes)", msg.n, split.n);
    check_answer(split.b, split.n, P2M_SNI_INVALID, "within the first 16384 bytes");
    check_answer(split.b, P2M_SNI_PEEK_MAX, P2M_SNI_INVALID, "within the first 16384 bytes");
    check_answer(split.b, P2M_SNI_PEEK_MAX - 1, P2M_SNI_NEED_MORE, NULL);
    CHECK_CTX(NULL);
}

/* --- hostile flights ----------------------------------------------------------------------------- */

/* One handshake record; a ClientHello message; its fields before the extensions (TLS 1.2-style,
 * no session id, one suite, null compression); a whole hello with extensions `x`; a server_name
 * extension with list `x`; a host_name entry. */
#define REC(x) "16 0301 {" x "}"
#define CH(x) "01 [" x "]"
#define BODY "0303 00*32 <> {1301} <00>"
#define HELLO(x) REC(CH(BODY x))
#define SNI(x) "0000 {{" x "}}"
#define HOST(x) "00 {" x "}"
#define NAME(x) HELLO("{" SNI(HOST(x)) "}")

#define L63 "'a'*63"
#define L64 "'a'*64"

#define A10 "aaaaaaaaaa"
#define A61 A10 A10 A10 A10 A10 A10 "a"
#define A63 A61 "aa"
#define A253 A63 "." A63 "." A63 "." A61

struct row {
    const char *what;
    const char *flight; /* the notation of assemble() */
    p2m_sni_status_t want;
    const char *want_text; /* FOUND: the name; INVALID: what err mentions */
};

static const struct row rows[] = {
    /* records */
    {"empty input", "", P2M_SNI_NEED_MORE, NULL},
    {"1 byte, handshake", "16", P2M_SNI_NEED_MORE, NULL},
    {"1 byte, other", "00", P2M_SNI_INVALID, "first byte 0x00 is not a handshake record"},
    {"record header only", "16 0301 0100", P2M_SNI_NEED_MORE, NULL},
    {"HTTP request", "'GET / HTTP/1.1' 0d0a 'Host: demo.pipe2me.localhost' 0d0a 0d0a", P2M_SNI_INVALID, "first byte 0x47"},
    {"HTTP request, 1 byte", "'G'", P2M_SNI_INVALID, "first byte 0x47 is not a handshake record (22)"},
    {"application data record", "17 0303 {00}", P2M_SNI_INVALID, "first byte 0x17"},
    {"alert record", "15 0301 {0228}", P2M_SNI_INVALID, "first byte 0x15"},
    {"change_cipher_spec record", "14 0303 {01}", P2M_SNI_INVALID, "first byte 0x14"},
    {"SSLv2-compatible hello", "80 2e 01 0301 0015 0000 0010 000039 000038 000035 0123456789abcdef0123456789abcdef",
     P2M_SNI_INVALID, "SSLv2-compatible hello"},
    {"SSL 3.0 record", "16 0300 0100", P2M_SNI_INVALID, "version 0x0300"},
    {"SSL 3.0 record, 3 bytes", "16 0300", P2M_SNI_INVALID, "version 0x0300"},
    {"record version 0x0305", "16 0305", P2M_SNI_INVALID, "version 0x0305"},
    {"record version 0x0201", "16 02", P2M_SNI_INVALID, "version 0x02.."},
    {"record version 0x0401", "16 0401 0001 01", P2M_SNI_INVALID, "version 0x0401"},
    {"record version 0x0304", "16 0304 {" CH(BODY) "}", P2M_SNI_NONE, NULL},
    {"record length 0", "16 0301 0000", P2M_SNI_INVALID, "length 0 at byte 0"},
    {"record length 16385", "16 0301 4001 01", P2M_SNI_INVALID, "length 16385 at byte 0"},
    {"record length 65535", "16 0301 ffff", P2M_SNI_INVALID, "length 65535"},
    {"ClientHello of 16376, ends at byte 16385", "16 0301 4000 01 003ff8", P2M_SNI_INVALID, "ClientHello of 16376 bytes"},
    {"ClientHello of 16375, ends at byte 16384", "16 0301 4000 01 003ff7", P2M_SNI_NEED_MORE, NULL},
    {"empty second record", "16 0301 {01 00} 16 0301 0000", P2M_SNI_INVALID, "length 0 at byte 7"},
    {"record length 16385 later", "16 0301 {01} 16 0301 4001", P2M_SNI_INVALID, "length 16385 at byte 6"},
    {"alert between fragments", "16 0301 {01 0000} 15 0301 {0228} 16 0301 {48" BODY "}", P2M_SNI_INVALID,
     "content type 21 at byte 8 before the ClientHello is complete"},
    {"application data between fragments", "16 0301 {01 000026 0303} 17 0303 {00}", P2M_SNI_INVALID, "content type 23 at byte 11"},
    {"fragments", "16 0301 {01} 16 0302 {00} 16 0303 {0029} 16 0304 {" BODY "}", P2M_SNI_NONE, NULL},
    {"SSL 3.0 version on a later fragment", "16 0301 {01 00} 16 0300 {0026}", P2M_SNI_INVALID, "version 0x0300 at byte 7"},

    /* the handshake message */
    {"handshake type 2 (ServerHello)", "16 0303 {02 [" BODY "]}", P2M_SNI_INVALID, "message type 2"},
    {"handshake type 0 (HelloRequest)", "16 0303 {00 000000}", P2M_SNI_INVALID, "message type 0"},
    {"handshake type 2 in 1 byte", "16 0303 {02}", P2M_SNI_INVALID, "message type 2"},
    {"empty ClientHello", REC("01 000000"), P2M_SNI_INVALID, "empty ClientHello"},
    {"ClientHello over 16384", REC("01 ffffff"), P2M_SNI_INVALID, "ClientHello of 16777215 bytes does not end"},
    {"ClientHello length overruns its record, flight ends", REC("01 000100" BODY), P2M_SNI_NEED_MORE, NULL},
    {"ClientHello length overruns its record, alert follows", REC("01 000100" BODY) "15 0303 {0228}", P2M_SNI_INVALID,
     "content type 21 at byte 50"},
    {"ClientHello length overruns its fields", REC("01 000100" BODY) REC("00*218"), P2M_SNI_INVALID,
     "extensions length does not match"},
    {"ClientHello shorter than its fields", REC(CH("0303 00*32 <> 0002 13")), P2M_SNI_INVALID, "shorter than its fields"},
    {"ClientHello of 1 byte", REC(CH("03")), P2M_SNI_INVALID, "shorter than its fields"},
    {"session id 32", REC(CH("0303 00*32 <00*32> {1301} <00>")), P2M_SNI_NONE, NULL},
    {"session id 33", REC(CH("0303 00*32 <00*33> {1301} <00>")), P2M_SNI_INVALID, "session id of 33 bytes"},
    {"session id overruns", REC(CH("0303 00*32 20 00*10")), P2M_SNI_INVALID, "shorter than its fields"},
    {"odd cipher length", REC(CH("0303 00*32 <> {130113} <00>")), P2M_SNI_INVALID, "cipher suites of 3 bytes"},
    {"no cipher suites", REC(CH("0303 00*32 <> {} <00>")), P2M_SNI_INVALID, "cipher suites of 0 bytes"},
    {"cipher suites overrun", REC(CH("0303 00*32 <> 0010 1301")), P2M_SNI_INVALID, "shorter than its fields"},
    {"zero compression methods", REC(CH("0303 00*32 <> {1301} <>")), P2M_SNI_INVALID, "no compression methods"},
    {"compression methods overrun", REC(CH("0303 00*32 <> {1301} 02 00")), P2M_SNI_INVALID, "shorter than its fields"},
    {"no extensions block (old hello)", HELLO(""), P2M_SNI_NONE, NULL},
    {"empty extensions block", HELLO("{}"), P2M_SNI_NONE, NULL},
    {"1 byte where the extensions length goes", HELLO("00"), P2M_SNI_INVALID, "extensions length does not match"},
    {"extensions block overruns the ClientHello", HELLO("0010 0017 0000"), P2M_SNI_INVALID, "extensions length does not match"},
    {"extensions block shorter than the ClientHello", HELLO("{0017 {}} 00"), P2M_SNI_INVALID, "extensions length does not match"},
    {"extension length overruns the block", HELLO("{0017 0005 00}"), P2M_SNI_INVALID, "extension overruns"},
    {"extension header cut", HELLO("{0017 00}"), P2M_SNI_INVALID, "extension overruns"},
    {"duplicate extension", HELLO("{0017 {} 002b {0304} 0017 {}}"), P2M_SNI_INVALID, "extension 23 appears twice"},
    {"duplicate extension 65535", HELLO("{ffff {} ffff {}}"), P2M_SNI_INVALID, "extension 65535 appears twice"},
    {"duplicate server_name", HELLO("{" SNI(HOST("'a.example'")) SNI(HOST("'a.example'")) "}"), P2M_SNI_INVALID,
     "extension 0 appears twice"},
    {"duplicate extension after server_name", HELLO("{" SNI(HOST("'a.example'")) "0017 {} 0017 {}}"), P2M_SNI_INVALID,
     "appears twice"},
    {"bytes after the ClientHello in its record", REC(CH(BODY "{" SNI(HOST("'a.example'")) "}") "ffff 00*20"), P2M_SNI_FOUND,
     "a.example"},
    {"record longer than its ClientHello, flight ends after it", "16 0301 0100" CH(BODY), P2M_SNI_NONE, NULL},
    {"another handshake record after the ClientHello", NAME("'a.example'") REC("ff"), P2M_SNI_FOUND, "a.example"},
    {"garbage after the ClientHello", NAME("'a.example'") "'GET / HTTP/1.1'", P2M_SNI_FOUND, "a.example"},

    /* server_name */
    {"host_name", NAME("'example.com'"), P2M_SNI_FOUND, "example.com"},
    {"host_name, extensions around it", HELLO("{0017 {} " SNI(HOST("'Example.COM'")) "002b {0304} 0015 {00*100}}"), P2M_SNI_FOUND,
     "example.com"},
    {"one-letter name", NAME("'x'"), P2M_SNI_FOUND, "x"},
    {"digits and hyphens", NAME("'0-9.a-z.--'"), P2M_SNI_FOUND, "0-9.a-z.--"},
    {"trailing dot", NAME("'Demo.Example.'"), P2M_SNI_FOUND, "demo.example"},
    {"empty server_name list", HELLO("{0000 {{}}}"), P2M_SNI_INVALID, "empty list"},
    {"empty server_name extension", HELLO("{0000 {}}"), P2M_SNI_INVALID, "list length does not match"},
    {"server_name list shorter than the extension", HELLO("{0000 {{" HOST("'a.example'") "} 00}}"), P2M_SNI_INVALID,
     "list length does not match"},
    {"server_name list overruns the extension", HELLO("{0000 {0020" HOST("'a.example'") "}}"), P2M_SNI_INVALID,
     "list length does not match"},
    {"host_name overruns the list", HELLO("{" SNI("00 0020 'a.example'") "}"), P2M_SNI_INVALID, "entry overruns"},
    {"host_name length cut", HELLO("{" SNI("00 00") "}"), P2M_SNI_INVALID, "entry overruns"},
    {"name_type only", HELLO("{" SNI("00") "}"), P2M_SNI_INVALID, "entry overruns"},
    {"other name types only", HELLO("{" SNI("01 {'x'} ff {}") "}"), P2M_SNI_NONE, NULL},
    {"other name type, then host_name", HELLO("{" SNI("01 {'x'}" HOST("'b.example'")) "}"), P2M_SNI_FOUND, "b.example"},
    {"host_name, then other name type", HELLO("{" SNI(HOST("'b.example'") "07 {'..'}") "}"), P2M_SNI_FOUND, "b.example"},
    {"duplicate host_name", HELLO("{" SNI(HOST("'a.example'") HOST("'b.example'")) "}"), P2M_SNI_INVALID,
     "more than one host_name"},
    {"duplicate host_name, same name", HELLO("{" SNI(HOST("'a.example'") HOST("'a.example'")) "}"), P2M_SNI_INVALID,
     "more than one host_name"},
    {"duplicate host_name, second bad", HELLO("{" SNI(HOST("'a.example'") HOST("'a b'")) "}"), P2M_SNI_INVALID,
     "more than one host_name"},
    {"empty name", NAME(""), P2M_SNI_INVALID, "empty host_name"},
    {"name of a dot", NAME("'.'"), P2M_SNI_INVALID, "empty host_name"},
    {"two dots", NAME("'..'"), P2M_SNI_INVALID, "empty label at byte 0"},
    {"253-byte name", NAME(L63 "'.'" L63 "'.'" L63 "'.' 'a'*61"), P2M_SNI_FOUND, A253},
    {"253-byte name and a trailing dot", NAME(L63 "'.'" L63 "'.'" L63 "'.' 'a'*61 '.'"), P2M_SNI_FOUND, A253},
    {"254-byte name", NAME(L63 "'.'" L63 "'.'" L63 "'.' 'a'*62"), P2M_SNI_INVALID, "host_name of 254 bytes is longer than 253"},
    {"254-byte name and a trailing dot", NAME(L63 "'.'" L63 "'.'" L63 "'.' 'a'*62 '.'"), P2M_SNI_INVALID, "host_name of 254 bytes"},
    {"16300-byte name", NAME("'a'*16300"), P2M_SNI_INVALID, "host_name of 16300 bytes"},
    {"63-byte label", NAME(L63 "'.example'"), P2M_SNI_FOUND, A63 ".example"},
    {"64-byte label", NAME(L64 "'.example'"), P2M_SNI_INVALID, "label longer than 63 bytes"},
    {"64-byte last label", NAME("'example.'" L64), P2M_SNI_INVALID, "label longer than 63 bytes"},
    {"63-byte only label", NAME(L63), P2M_SNI_FOUND, A63},
    {"leading dot", NAME("'.example.com'"), P2M_SNI_INVALID, "empty label at byte 0"},
    {"empty label", NAME("'example..com'"), P2M_SNI_INVALID, "empty label at byte 8"},
    {"two trailing dots", NAME("'example.com..'"), P2M_SNI_INVALID, "ends in an empty label"},
    {"space", NAME("'exa mple.com'"), P2M_SNI_INVALID, "byte 0x20 at 3 of host_name"},
    {"underscore", NAME("'_acme.example.com'"), P2M_SNI_INVALID, "byte 0x5f at 0 of host_name"},
    {"NUL", NAME("'example.com' 00"), P2M_SNI_INVALID, "byte 0x00 at 11 of host_name"},
    {"NUL inside", NAME("'a' 00 'b.example'"), P2M_SNI_INVALID, "byte 0x00 at 1"},
    {"0x80", NAME("'ex' 80 'ample.com'"), P2M_SNI_INVALID, "byte 0x80 at 2"},
    {"0xff", NAME("ff"), P2M_SNI_INVALID, "byte 0xff at 0"},
    {"UTF-8 (not A-label)", NAME("'b' c3bc 'cher.example'"), P2M_SNI_INVALID, "byte 0xc3 at 1"},
    {"IPv6 literal", NAME("'[::1]'"), P2M_SNI_INVALID, "byte 0x5b at 0"},
    {"port in the name", NAME("'example.com:443'"), P2M_SNI_INVALID, "byte 0x3a at 11"},
    {"a server_name in another extension's body", HELLO("{0017 {" SNI(HOST("'a.example'")) "}}"), P2M_SNI_NONE, NULL},
};

/* Rows also written as fuzz seeds: they reach checks that mutations of OpenSSL's hellos rarely
 * build. The seed is named for the row, lower-cased, spaces and punctuation as '_'. */
static const char *const seed_rows[] = {
    "fragments",
    "alert between fragments",
    "bytes after the ClientHello in its record",
    "host_name, extensions around it",
    "other name types only",
    "duplicate host_name",
    "254-byte name",
    "64-byte label",
    "empty label",
    "two trailing dots",
    "underscore",
    "ClientHello of 16375, ends at byte 16384",
};

static void write_row_seed(const char *what, const flight_t *f)
{
    char slug[128] = "row_";
    size_t n = strlen(slug);
    for (const char *p = what; *p != '\0' && n + 1 < sizeof(slug); p++)
        slug[n++] = isalnum((unsigned char)*p) ? (char)tolower((unsigned char)*p) : '_';
    slug[n] = '\0';
    write_seed(slug, "", f);
}

static void test_rows(void)
{
    static flight_t f;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        assemble(r->flight, &f);
        for (size_t k = 0; k < sizeof(seed_rows) / sizeof(seed_rows[0]); k++)
            if (strcmp(r->what, seed_rows[k]) == 0)
                write_row_seed(r->what, &f);
        CHECK_CTX("row %zu (%s): %s", i, r->what, check_bytes((const char *)f.b, f.n));
        check_answer(f.b, f.n, r->want, r->want_text);
        check_prefixes(f.b, f.n, r->want, r->want_text, 0, 1);
    }
    CHECK_CTX(NULL);
}

static void test_misc(void)
{
    char name[P2M_SNI_NAME_MAX + 1] = "x";
    CHECK_CTX("NULL buf, len 0");
    CHECK_EQ_STR(p2m_sni_status_name(p2m_sni_parse(NULL, 0, name, NULL)), "need_more");
    CHECK_EQ_STR(name, "");
    CHECK_CTX("NULL err");
    static const uint8_t http[] = "GET / HTTP/1.1\r\n";
    CHECK_EQ_STR(p2m_sni_status_name(p2m_sni_parse(http, sizeof(http) - 1, name, NULL)), "invalid");
    CHECK_CTX("status names");
    CHECK_EQ_STR(p2m_sni_status_name(P2M_SNI_NEED_MORE), "need_more");
    CHECK_EQ_STR(p2m_sni_status_name(P2M_SNI_FOUND), "found");
    CHECK_EQ_STR(p2m_sni_status_name(P2M_SNI_NONE), "none");
    CHECK_EQ_STR(p2m_sni_status_name(P2M_SNI_INVALID), "invalid");
    CHECK_EQ_STR(p2m_sni_status_name((p2m_sni_status_t)7), "?");
    CHECK_CTX(NULL);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        corpus_dir = argv[2];
    else if (argc != 1) {
        fprintf(stderr, "usage: unit_sni [--write-corpus DIR]\n");
        return 2;
    }
    test_rows();
    test_misc();
    test_openssl();
    test_peek_max();
    return check_done("sni");
}

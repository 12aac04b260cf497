#include "p2m/setup.h"
#include "p2m/err.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* Bytes of input an error message may quote, before escaping. */
#define EXCERPT_MAX 16

/* Renders at most EXCERPT_MAX bytes of s[0..len) into out (EXCERPT_MAX * 4 + 4 bytes) as printable
 * ASCII: '"', '\\' and anything outside 0x20..0x7e become \xNN, and "..." marks a cut. The input is
 * a stranger's: an error line must not carry its control bytes into a log. */
static const char *excerpt(const char *s, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = len < EXCERPT_MAX ? len : EXCERPT_MAX, pos = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            out[pos++] = (char)c;
        } else {
            out[pos++] = '\\';
            out[pos++] = 'x';
            out[pos++] = hex[c >> 4];
            out[pos++] = hex[c & 15];
        }
    }
    if (n < len) {
        memcpy(out + pos, "...", 3);
        pos += 3;
    }
    out[pos] = '\0';
    return out;
}

static int parse_protocols(json_t *value, p2m_setup_req_t *out, char *err)
{
    char ex[EXCERPT_MAX * 4 + 4];
    if (!json_is_array(value))
        return p2m_err(err, "protocols: expected an array of \"https\", \"http\" or \"tcp\"");
    size_t n = json_array_size(value);
    if (n < 1 || n > P2M_SETUP_PROTOS_MAX)
        return p2m_err(err, "protocols: expected 1 to %d entries, got %zu", P2M_SETUP_PROTOS_MAX, n);
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(value, i);
        p2m_proto_t proto;
        if (!json_is_string(item))
            return p2m_err(err, "protocols[%zu]: expected \"https\", \"http\" or \"tcp\"", i);
        const char *s = json_string_value(item);
        size_t len = json_string_length(item);
        if (p2m_proto_parse(s, len, &proto, NULL) != 0)
            return p2m_err(err, "protocols[%zu]: expected \"https\", \"http\" or \"tcp\", got \"%s\"", i, excerpt(s, len, ex));
        for (size_t j = 0; j < i; j++) {
            if (out->protos[j] == proto)
                return p2m_err(err, "protocols[%zu]: \"%s\" is listed twice", i, p2m_proto_name(proto));
        }
        out->protos[i] = proto;
    }
    out->nprotos = n;
    return 0;
}

int p2m_setup_body_parse(const char *body, size_t len, p2m_setup_req_t *out, char *err)
{
    char ex[EXCERPT_MAX * 4 + 4];
    memset(out, 0, sizeof(*out));
    if (body == NULL || len == 0)
        return p2m_err(err, "body: empty; expected a JSON object with \"protocols\"");
    if (len > P2M_SETUP_BODY_MAX)
        return p2m_err(err, "body: longer than %d bytes", P2M_SETUP_BODY_MAX);

    json_error_t jerr;
    /* JSON_REJECT_DUPLICATES: {"label":"a","label":"b"} is ambiguous, not a choice. Without
     * JSON_ALLOW_NUL, "\u0000" in a string is refused as well. */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return p2m_err(err, "body: not JSON (line %d column %d)", jerr.line, jerr.column);
    int ret = -1, have_protocols = 0;
    if (!json_is_object(root)) {
        p2m_err(err, "body: expected a JSON object");
        goto Exit;
    }
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        if (strcmp(key, "protocols") == 0) {
            if (parse_protocols(value, out, err) != 0)
                goto Exit;
            have_protocols = 1;
        } else if (strcmp(key, "label") == 0) {
            if (!json_is_string(value)) {
                p2m_err(err, "label: expected a string");
                goto Exit;
            }
            if (p2m_label_normalize(json_string_value(value), json_string_length(value), out->label, err) != 0)
                goto Exit;
        } else {
            p2m_err(err, "body: unknown key \"%s\"; the keys are \"protocols\" and \"label\"", excerpt(key, strlen(key), ex));
            goto Exit;
        }
    }
    if (!have_protocols) {
        p2m_err(err, "protocols: missing; expected an array such as [\"https\"]");
        goto Exit;
    }
    ret = 0;
Exit:
    json_decref(root);
    return ret;
}

int p2m_setup_body_format(const p2m_setup_req_t *req, char *out, size_t cap)
{
    size_t pos = 0;
    int n;
    if (req->nprotos < 1 || req->nprotos > P2M_SETUP_PROTOS_MAX || cap == 0)
        return -1;
#define APPEND(...)                                                                                                                \
    do {                                                                                                                           \
        n = snprintf(out + pos, cap - pos, __VA_ARGS__);                                                                           \
        if (n < 0 || (size_t)n >= cap - pos)                                                                                       \
            return -1;                                                                                                             \
        pos += (size_t)n;                                                                                                          \
    } while (0)
    APPEND("{\"protocols\":[");
    for (size_t i = 0; i < req->nprotos; i++) {
        const char *name = p2m_proto_name(req->protos[i]);
        if (strcmp(name, "?") == 0)
            return -1;
        APPEND("%s\"%s\"", i == 0 ? "" : ",", name);
    }
    APPEND("]");
    /* A normalized label is [a-z0-9-] only: nothing to escape. */
    if (req->label[0] != '\0')
        APPEND(",\"label\":\"%.*s\"", P2M_LABEL_MAX, req->label);
    APPEND("}");
#undef APPEND
    return (int)pos;
}

int p2m_setup_label_allowed(const char *label, const char *prefix, char *err)
{
    char want[P2M_LABEL_MAX + 1], pre[P2M_LABEL_MAX + 1];
    if (label == NULL)
        return p2m_err(err, "label is empty");
    if (p2m_label_normalize(label, strlen(label), want, err) != 0)
        return -1;
    if (prefix == NULL || prefix[0] == '\0')
        return 0;
    if (p2m_label_normalize(prefix, strlen(prefix), pre, NULL) != 0)
        return p2m_err(err, "label: the token's label prefix is not a valid label");
    size_t n = strlen(pre);
    if (strncmp(want, pre, n) != 0 || want[n] != '-' || want[n + 1] == '\0')
        return p2m_err(err, "label: this token allows only labels of the form \"%s-...\"", pre);
    return 0;
}

int p2m_setup_label_generate(const char *prefix, char *out, size_t cap)
{
    char gen[P2M_LABEL_MAX + 1], pre[P2M_LABEL_MAX + 1], label[P2M_LABEL_MAX + 1];
    if (p2m_label_generate(gen) != 0)
        return -1;
    if (prefix == NULL || prefix[0] == '\0') {
        snprintf(label, sizeof(label), "%s", gen);
    } else {
        if (p2m_label_normalize(prefix, strlen(prefix), pre, NULL) != 0)
            return -1;
        /* Cut the prefix, not the generated part: the random words are what makes labels differ. Cut
         * every label of an over-long prefix alike, not only those with long words, so that they still
         * share one prefix. P2M_SETUP_GENERATED_MAX is a fact about label.c's word lists: checked here,
         * so that a longer word there fails loudly instead of overflowing label. */
        size_t glen = strlen(gen), n = strlen(pre);
        if (glen > P2M_SETUP_GENERATED_MAX)
            return -1;
        if (n > P2M_SETUP_PREFIX_MAX)
            n = P2M_SETUP_PREFIX_MAX;
        while (n > 0 && pre[n - 1] == '-')
            n--;
        memcpy(label, pre, n);
        label[n] = '-';
        memcpy(label + n + 1, gen, glen + 1);
    }
    size_t len = strlen(label);
    if (len >= cap)
        return -1;
    memcpy(out, label, len + 1);
    return 0;
}

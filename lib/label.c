#include "p2m/label.h"
#include "p2m/err.h"

#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int p2m_label_normalize(const char *s, size_t len, char *out, char *err)
{
    if (s == NULL || len == 0)
        return p2m_err(err, "label is empty");
    if (len > P2M_LABEL_MAX)
        return p2m_err(err, "label is longer than %d characters", P2M_LABEL_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return p2m_err(err, "label has a character outside [a-z0-9-] at position %zu", i + 1);
        out[i] = (char)c;
    }
    if (s[0] == '-' || s[len - 1] == '-')
        return p2m_err(err, "label starts or ends with a hyphen");
    out[len] = '\0';
    return 0;
}

int p2m_id_valid(const char *s, size_t len, char *err)
{
    if (s == NULL || len == 0)
        return p2m_err(err, "pod ID is empty");
    if (len > P2M_ID_MAX)
        return p2m_err(err, "pod ID is longer than %d characters", P2M_ID_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '-' && c != '_' && c != '.')))
            return p2m_err(err,
                           i == 0 ? "pod ID must start with a letter or digit" : "pod ID has a character outside [A-Za-z0-9._-]");
    }
    return 0;
}

/* 64 words each: 6 bits from each list, 2^18 labels. Short, unambiguous, inoffensive words. */
static const char *const adjectives[64] = {
    "able",   "amber",  "azure",    "bold",   "brave",  "bright", "brisk",  "calm",   "clever", "cosy",   "crisp",
    "curly",  "dapper", "eager",    "early",  "fancy",  "fluffy", "frank",  "gentle", "giddy",  "glad",   "golden",
    "grand",  "happy",  "handsome", "hardy",  "honest", "humble", "jolly",  "keen",   "kind",   "lively", "lucky",
    "mellow", "merry",  "mighty",   "misty",  "modest", "neat",   "nimble", "noble",  "perky",  "plucky", "polite",
    "proud",  "quick",  "quiet",    "rapid",  "rosy",   "rustic", "shiny",  "silver", "smart",  "snowy",  "steady",
    "sunny",  "swift",  "tidy",     "tender", "vivid",  "warm",   "witty",  "young",  "zesty"};
static const char *const fruits[64] = {
    "apple",   "apricot", "banana", "berry",  "cherry", "citron", "clove",  "cocoa",    "coconut", "cumin",  "date",
    "fennel",  "fig",     "ginger", "grape",  "guava",  "hazel",  "honey",  "kiwi",     "kumquat", "leek",   "lemon",
    "lime",    "lychee",  "mango",  "maple",  "melon",  "mint",   "nectar", "nutmeg",   "olive",   "onion",  "orange",
    "papaya",  "peach",   "peanut", "pear",   "pecan",  "pepper", "plum",   "pomelo",   "quince",  "radish", "raisin",
    "rhubarb", "saffron", "sage",   "sesame", "sorrel", "squash", "sugar",  "tamarind", "thyme",   "tomato", "truffle",
    "turnip",  "vanilla", "walnut", "wasabi", "yam",    "yuzu",   "basil",  "carrot",   "celery"};
static const char *const animals[64] = {
    "badger",  "beaver", "bison",  "bobcat",  "camel",   "cheetah", "cobra",   "condor",  "coyote",  "crane",  "dingo",
    "dolphin", "eagle",  "ferret", "finch",   "gazelle", "gecko",   "gibbon",  "heron",   "ibex",    "impala", "jackal",
    "jaguar",  "koala",  "lemur",  "leopard", "llama",   "lynx",    "magpie",  "marten",  "meerkat", "mole",   "moose",
    "narwhal", "ocelot", "orca",   "osprey",  "otter",   "panda",   "panther", "pelican", "penguin", "puffin", "quail",
    "rabbit",  "raven",  "robin",  "salmon",  "seal",    "shark",   "sloth",   "spider",  "stork",   "swan",   "tapir",
    "tiger",   "toucan", "turtle", "walrus",  "weasel",  "whale",   "wombat",  "yak",     "zebra"};

int p2m_label_generate(char *out)
{
    unsigned char r[3];
    if (RAND_bytes(r, sizeof(r)) != 1)
        return -1;
    snprintf(out, P2M_LABEL_MAX + 1, "%s-%s-%s", adjectives[r[0] & 63], fruits[r[1] & 63], animals[r[2] & 63]);
    return 0;
}

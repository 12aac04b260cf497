#ifndef P2M_ARGS_H
#define P2M_ARGS_H

#include <getopt.h>
#include <stddef.h>

/* Helpers for the programs' command-line parsers (registrar/args.c, relay/args.c). */

/* Bytes of an argument quoted in an error message before it is cut short. */
#define P2M_SHOWN_MAX 48
/* Room p2m_shown() needs: every byte as \xNN, then "..." and the NUL. */
#define P2M_SHOWN_CAP (P2M_SHOWN_MAX * 4 + 4)

/* Writes outside text s for an error message into buf (P2M_SHOWN_CAP bytes): printable ASCII as
 * is, any other byte as \xNN, cut short with "..." after P2M_SHOWN_MAX bytes. Returns buf. */
const char *p2m_shown(const char *s, char *buf);

/* The option a getopt_long() error is about, as the user spelled it ("--config", "-x", or the
 * unknown argument itself), quoted like p2m_shown() into buf (P2M_SHOWN_CAP bytes). first_long is
 * the smallest val of longopts' long-only options. Call right after getopt_long returned '?' or
 * ':'. */
const char *p2m_getopt_option_name(const struct option *longopts, int first_long, char **argv, char *buf);

/* Says in err what getopt_long() (opterr 0, optstring starting with ':') refused: its return value
 * opt is ':' for a missing argument, '?' for an unknown option or a value given to an option that
 * takes none. Returns -1. */
int p2m_getopt_fail(const struct option *longopts, int first_long, char **argv, int opt, char *err);

#endif

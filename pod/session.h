#ifndef POD_SESSION_H
#define POD_SESSION_H

/* The pod's credentials toward the registrar, apart from the secret itself: the last TOTP step a
 * request used (a code is accepted once per 30-second step, so a step is never sent twice: the
 * registrar counts a 401 toward its lockout) and the session credential (P2M-Session) presented as
 * Bearer until it expires. With --state-dir both survive a restart: DIR/totp-step, and DIR/session
 * with its pod, label and expiry (mode 0600, like the secret file beside it), each written with
 * rename(2); a failure to write only costs a TOTP round. The credential is never logged. */

#include <stdint.h>

#include "pod.h"
#include "reg_header.h"

/* The last TOTP step a request may have consumed. A code is accepted once per pod and step, so
 * every session of one pod in a process (run's services, one session per label) shares one. */
typedef struct {
    uint64_t used;
    char path[POD_PATH_MAX + 16]; /* DIR/totp-step, "" without a state directory */
} pod_steps_t;

typedef struct pod_session_s {
    char id[P2M_ID_MAX + 1], label[P2M_LABEL_MAX + 1];
    p2m_loop_t *loop;                                     /* borrowed: its clock times the session */
    pod_steps_t own_steps, *steps;                        /* steps: own_steps, or the process's shared ones */
    char session_path[POD_PATH_MAX + P2M_LABEL_MAX + 16]; /* "" without --state-dir */
    char cred[REG_SESSION_MAX + 1];                       /* the session credential, "" when none */
    uint64_t until;                                       /* loop ms it is dropped at */
} pod_session_t;

/* Reads DIR/totp-step into *steps (path "" when dir is ""). */
void pod_steps_init(pod_steps_t *steps, const char *dir);

/* Sets up *s for args' pod and label and, with a state directory, reads back a session for them
 * that has more than a minute left (logged as session_resumed) from session_path (NULL: the
 * state directory's "session"). steps: the process's shared steps, NULL for the session's own
 * (DIR/totp-step). */
void pod_session_init(pod_session_t *s, const pod_args_t *args, p2m_loop_t *loop, pod_steps_t *steps, const char *session_path);

/* Wipes the credential from memory (at shutdown; the file stays). */
void pod_session_wipe(pod_session_t *s);

/* The TOTP step a request may use now: returns 0 with *step, or -1 with *wait_ms until the next
 * step starts (plus a margin, so that clocks agree) when the current one is used. */
int pod_session_step_next(pod_session_t *s, uint64_t *step, unsigned *wait_ms);

/* A request goes out with step: it counts as used (and is saved). Returns the step used before,
 * for pod_session_step_unuse(). */
uint64_t pod_session_step_use(pod_session_t *s, uint64_t step);

/* The request with the step never left: the step used before (prev) is the last one again. */
void pod_session_step_unuse(pod_session_t *s, uint64_t prev);

/* Keeps cred (a valid credential, copied) for ttl_s seconds less a margin, so that it is renewed
 * before the registrar drops it; with save, also in DIR/session. */
void pod_session_set(pod_session_t *s, const char *cred, unsigned ttl_s, int save);

/* Forgets the credential, and removes DIR/session. */
void pod_session_drop(pod_session_t *s);

/* Drops the credential when it is past its end (logged as session_expired). */
void pod_session_expire(pod_session_t *s);

#endif

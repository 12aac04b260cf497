/* pipe2me-pod: the command line. Settings are parsed by provision.c; `register` and `run` go to
 * run.c, which runs the services on a p2m loop until SIGTERM or SIGINT. */
#include "pod.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "p2m/err.h"
#include "p2m/totp.h"

int main(int argc, char **argv)
{
    static pod_args_t args;
    char err[P2M_ERR_LEN];
    int ret;

    if (pod_args_parse(argc, argv, &args, err) != 0) {
        fprintf(stderr, "pipe2me-pod: %s\n", err);
        return 2;
    }
    switch (args.cmd) {
    case POD_CMD_HELP:
        pod_args_usage(stdout);
        return 0;
    case POD_CMD_VERSION:
        printf("pipe2me-pod %s\n", P2M_VERSION);
        return 0;
    case POD_CMD_STATUS:
        return status_command(&args);
    case POD_CMD_ENV:
        ret = args.set[0] != '\0' ? set_env_command(&args) : env_command(&args);
        break;
    case POD_CMD_TEST:
        ret = args.config[0] != '\0' ? pod_run(&args) : echo_command(&args);
        break;
    case POD_CMD_SETUP:
        ret = setup_command(&args);
        break;
    case POD_CMD_LIST:
        ret = list_command(&args);
        break;
    case POD_CMD_REGISTER:
    case POD_CMD_RUN:
        ret = pod_run(&args);
        break;
    default:
        ret = 2;
        break;
    }
    pod_args_wipe(&args);
    return ret;
}

/*
 * entry: the cloudctl executable's main(). Everything else is in the
 * cloudctl_core library so tests can link it.
 */
#include <signal.h>
#include <stdio.h>

#include "cli.h"

int
main(int argc, char **argv)
{
    /* A closed pipe (cloudctl ps | head) must end us quietly, as it does
     * any filter; libevent writes would otherwise see EPIPE mid-request. */
    signal(SIGPIPE, SIG_IGN);
    return cli_main(argc, argv, stdout, stderr);
}

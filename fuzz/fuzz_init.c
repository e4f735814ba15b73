/*
 * fuzz_init: the LLVMFuzzerInitialize of the targets whose code under test
 * logs (domxml refuses specs with a warning, the frame codec bad frames):
 * only errors are printed, to keep the fuzzer quiet, unless FUZZ_VERBOSE=1
 * shows why inputs are refused (to check the seeds). The log carries the
 * program's name.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *name = (*argv)[0];
    const char *slash = strrchr(name, '/');

    (void)argc;
    log_init(slash != NULL ? slash + 1 : name,
             getenv("FUZZ_VERBOSE") ? LOG_LVL_DEBUG : LOG_LVL_ERR, 0);
    return 0;
}

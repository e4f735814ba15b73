/*
 * cmdline: the limits of what a guest is given at boot and on its channel,
 * shared by the controller (which refuses what does not fit, with a 422)
 * and the agent (which carries it), so that what the API accepts is what
 * the agent sends and the guest receives (docs/config.md "Limits"). Also
 * the quoting of instance args on a Linux kernel command line.
 *
 * Quoting (docs/api.md "args"): an arg that is empty or holds a space goes
 * in double quotes, "a b", which the kernel's parser (lib/cmdline.c
 * next_arg) reads as one word and strips again (also in key="a b" form,
 * and for the words after "--" that become init's argv). A double quote
 * inside an arg cannot be expressed, nor can a control character: such an
 * arg is refused.
 */
#ifndef CLOUD_CMDLINE_H
#define CLOUD_CMDLINE_H

#include <stddef.h>

/* x86 and arm64 COMMAND_LINE_SIZE is 2048 bytes with the NUL. */
#define CMDLINE_MAX 2047
/* The image's own command line, then one space, then the quoted args: the
 * two halves always fit together, whatever image a service is moved to.
 * The agent appends nothing of its own. */
#define CMDLINE_IMAGE_MAX 1024
#define CMDLINE_ARGS_MAX (CMDLINE_MAX - CMDLINE_IMAGE_MAX - 1)

/* Instance env: keys+values of all entries (each value is at most 4096).
 * Every desired set carries each instance's env inline (one frame, 4 MiB):
 * kept small, as AWS Lambda keeps its 4 KiB. */
#define GUEST_ENV_KEYS_MAX 256
#define GUEST_ENV_VALUE_MAX 4096
#define GUEST_ENV_TOTAL_MAX (16 * 1024)
/* Service config (api_config.h, migrations/functions/cloud_config_write.sql). */
#define GUEST_CONFIG_KEYS_MAX 1000
#define GUEST_CONFIG_KEY_MAX 128
#define GUEST_CONFIG_VALUE_MAX (64 * 1024)
#define GUEST_CONFIG_TOTAL_MAX (1024 * 1024)
/* Link variables: at most GUEST_LINKS_MAX links, each giving L_ENDPOINTS
 * (at most GUEST_LINK_ENDPOINTS_MAX bytes of addresses: past it the list is
 * cut at a whole address and L_ENDPOINTS_TRUNCATED says how many there
 * are), L_ENDPOINTS_VERSION; L is a service name (<= 63) upper-cased. */
#define GUEST_LINKS_MAX 64
#define GUEST_LINK_ENDPOINTS_MAX (16 * 1024)
#define GUEST_LINK_KEY_MAX (63 + 20) /* L + "_ENDPOINTS_TRUNCATED" */

/*
 * The longest line the agent may have to write to a guest. JSON escaping
 * makes a control character in a value 6 bytes (\u0001); keys and link
 * values (addresses, digits) are never escaped. Per entry "k":"v", is 6
 * bytes more. The config line {"version":N,"config":{...}} holds the
 * config and the link variables (a link variable replaces a config key of
 * its name, so adding both bounds it); the boot line {"env":{...},
 * "args":[...]} the env and the args.
 */
#define GUEST_CONFIG_LINE_BOUND                                                \
    (64 + 6 * (size_t)GUEST_CONFIG_TOTAL_MAX + 6 * (size_t)GUEST_CONFIG_KEYS_MAX + \
     (size_t)GUEST_LINKS_MAX *                                                 \
         (3 * (GUEST_LINK_KEY_MAX + 6) + GUEST_LINK_ENDPOINTS_MAX + 2 * 20))
#define GUEST_BOOT_LINE_BOUND                                                  \
    (64 + 6 * (size_t)GUEST_ENV_TOTAL_MAX + 6 * (size_t)GUEST_ENV_KEYS_MAX +   \
     2 * (size_t)CMDLINE_ARGS_MAX + 3 * 256)
/* What the agent's channel accepts to write (agent -> guest). */
#define GUEST_LINE_MAX (8u * 1024u * 1024u)

_Static_assert(GUEST_CONFIG_LINE_BOUND <= GUEST_LINE_MAX,
               "the largest config line must fit the channel's line max");
_Static_assert(GUEST_BOOT_LINE_BOUND <= GUEST_LINE_MAX,
               "the largest boot line must fit the channel's line max");

/*
 * 0 if arg can go on a kernel command line (quoted if need be); -1 with a
 * one-sentence reason in why ("contains a double quote", ...) if not.
 */
int cmdline_arg_check(const char *arg, char *why, size_t whylen);

/* Bytes arg takes on the command line: quotes included. arg checked. */
size_t cmdline_arg_len(const char *arg);

/*
 * image (may be NULL or "") then the args, quoted, separated by single
 * spaces, as a new string. NULL with why set when an arg cannot be quoted
 * or the result is longer than max bytes.
 */
char *cmdline_join(const char *image, const char *const *args, size_t nargs,
                   size_t max, char *why, size_t whylen);

#endif

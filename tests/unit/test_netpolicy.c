/*
 * test_netpolicy: links are the firewall, on real nftables (agent/netpolicy.c).
 * The test moves itself into a network namespace of its own (unshare:
 * needs root, and fails, never skips, without it), applies a policy, reads
 * table inet cloud back through libnftables, applies a changed policy and
 * checks that what it no longer says is gone, deletes the table, and
 * checks that input which is not an address never reaches nft.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nftables/libnftables.h>

#include "mem.h"
#include "netpolicy.h"
#include "netpolicy_priv.h"

#define SYSCTL_IPT "/proc/sys/net/bridge/bridge-nf-call-iptables"

/* The output of one nft command (xmalloc'd), or NULL when nft refused it;
 * *err (if given) then holds the error text. */
static char *
nft(const char *cmd, char **err)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    char *out = NULL;

    assert_non_null(ctx);
    assert_int_equal(nft_ctx_buffer_output(ctx), 0);
    assert_int_equal(nft_ctx_buffer_error(ctx), 0);
    if (nft_run_cmd_from_buffer(ctx, cmd) == 0)
        out = xstrdup(nft_ctx_get_output_buffer(ctx));
    else if (err)
        *err = xstrdup(nft_ctx_get_error_buffer(ctx));
    nft_ctx_free(ctx);
    return out;
}

static char *
list_cloud(void)
{
    char *out = nft("list table inet cloud", NULL);

    assert_non_null(out);
    return out;
}

static void
write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
    assert_int_equal(close(fd), 0);
}

static char
read_first(const char *path)
{
    char c = 0;
    int fd = open(path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(read(fd, &c, 1), 1);
    close(fd);
    return c;
}

static const char *const from6[] = {"10.240.3.6"};
static const char *const from7[] = {"10.240.3.7", "10.240.9.20"};

/* .5 accepts from .6 only; .8 is open. */
static const struct netpolicy_inst insts_v1[] = {
    {.address = "10.240.3.5", .allowed = from6, .nallowed = 1},
    {.address = "10.240.3.8", .open = 1},
};
/* .5 accepts from .7 and a guest on another host; nothing is open. */
static const struct netpolicy_inst insts_v2[] = {
    {.address = "10.240.3.5", .allowed = from7, .nallowed = 2},
    {.address = "10.240.3.8"},
};

static struct netpolicy
policy(const struct netpolicy_inst *insts, size_t n)
{
    struct netpolicy p = {
        .cluster_cidr = "10.240.0.0/16",
        .subnet = "10.240.3.0/24",
        .bridge = "cloudbr0",
        .gateway = "10.240.3.1",
        .insts = insts,
        .ninsts = n,
    };
    return p;
}

static int
group_setup(void **state)
{
    (void)state;
    /* Real nftables, but never the machine's own: a namespace of our own.
     * Without root this fails the test (print_error + -1), on purpose. */
    if (unshare(CLONE_NEWNET) < 0) {
        print_error("unshare(CLONE_NEWNET): %s: test_netpolicy needs root\n",
                    strerror(errno));
        return -1;
    }
    return 0;
}

static void
test_apply_lists_the_policy(void **state)
{
    struct netpolicy p = policy(insts_v1, 2);
    char why[512] = "";
    char *out;

    (void)state;
    /* Someone else's table: never touched. */
    out = nft("add table inet other\n"
              "add chain inet other input { type filter hook input priority 0; }\n"
              "add rule inet other input tcp dport 9 counter accept\n",
              NULL);
    assert_non_null(out);
    free(out);
    write_file(SYSCTL_IPT, "0\n");

    assert_int_equal(netpolicy_apply(&p, why, sizeof(why)), 0);
    assert_int_equal(read_first(SYSCTL_IPT), '1');

    out = list_cloud();
    assert_non_null(strstr(out, "set allow"));
    assert_non_null(strstr(out, "type ipv4_addr . ipv4_addr"));
    assert_non_null(strstr(out, "10.240.3.5 . 10.240.3.6"));
    assert_non_null(strstr(out, "set open"));
    assert_non_null(strstr(out, "elements = { 10.240.3.8 }"));
    assert_non_null(strstr(out, "type filter hook forward priority filter; policy accept;"));
    assert_non_null(strstr(out, "oifname \"cloudbr0\" ip daddr 10.240.3.0/24 jump guest_in"));
    assert_non_null(strstr(out, "ct state established,related accept"));
    assert_non_null(strstr(out, "ip saddr 10.240.3.1 drop"));
    assert_non_null(strstr(out, "ip daddr @open accept"));
    assert_non_null(strstr(out, "ip daddr . ip saddr @allow accept"));
    assert_non_null(strstr(out, "icmp type echo-request accept"));
    assert_non_null(strstr(out, "type nat hook postrouting priority srcnat; policy accept;"));
    assert_non_null(strstr(out, "ip saddr 10.240.0.0/16 ip daddr != 10.240.0.0/16 masquerade"));
    /* The allowed rule comes before the final drop. */
    assert_true(strstr(out, "@allow accept") < strstr(out, "counter packets"));
    free(out);

    out = nft("list table inet other", NULL);
    assert_non_null(out);
    assert_non_null(strstr(out, "tcp dport 9"));
    free(out);
}

static void
test_update_replaces_everything(void **state)
{
    struct netpolicy p1 = policy(insts_v1, 2), p2 = policy(insts_v2, 2);
    char why[512] = "";
    char *out;

    (void)state;
    assert_int_equal(netpolicy_apply(&p1, why, sizeof(why)), 0);
    assert_int_equal(netpolicy_apply(&p2, why, sizeof(why)), 0);
    out = list_cloud();
    assert_non_null(strstr(out, "10.240.3.5 . 10.240.3.7"));
    assert_non_null(strstr(out, "10.240.3.5 . 10.240.9.20"));
    assert_null(strstr(out, "10.240.3.6"));    /* no longer allowed */
    assert_null(strstr(out, "10.240.3.8"));    /* no longer open */
    /* One table, one set of chains: the update did not add a second copy. */
    assert_null(strstr(strstr(out, "chain forward") + 1, "chain forward"));
    free(out);

    /* An empty policy: every address in the subnet closed. */
    p2.ninsts = 0;
    assert_int_equal(netpolicy_apply(&p2, why, sizeof(why)), 0);
    out = list_cloud();
    assert_null(strstr(out, "10.240.3.5"));
    assert_non_null(strstr(out, "jump guest_in"));
    free(out);
}

static void
test_remove(void **state)
{
    struct netpolicy p = policy(insts_v1, 2);
    char why[512] = "";
    char *err = NULL, *out;

    (void)state;
    assert_int_equal(netpolicy_apply(&p, why, sizeof(why)), 0);
    assert_int_equal(netpolicy_remove(why, sizeof(why)), 0);
    assert_null(nft("list table inet cloud", &err));
    assert_non_null(err);
    assert_non_null(strstr(err, "No such file or directory"));
    free(err);
    /* Removing what is not there is not an error. */
    assert_int_equal(netpolicy_remove(why, sizeof(why)), 0);
    out = nft("list table inet other", NULL);
    assert_non_null(out);
    free(out);
}

/* Applies p (which must be refused), checks why names the culprit and says
 * what is wrong, and that the table in force is still the one of v1. */
static void
refused(const struct netpolicy *p, const char *culprit, const char *what)
{
    char why[512] = "";
    char *out, *script;

    assert_int_equal(netpolicy_apply(p, why, sizeof(why)), -1);
    if (strstr(why, culprit) == NULL || strstr(why, what) == NULL)
        fail_msg("why \"%s\" should name \"%s\" and say \"%s\"", why, culprit,
                 what);
    assert_null(strchr(why, '\n'));
    script = netpolicy_script(p, why, sizeof(why));
    assert_null(script);
    out = list_cloud();
    assert_non_null(strstr(out, "10.240.3.5 . 10.240.3.6"));
    assert_null(strstr(out, "evil"));
    free(out);
    out = nft("list tables", NULL);
    assert_non_null(out);
    assert_null(strstr(out, "evil"));
    free(out);
}

static void
test_bad_input_never_reaches_nft(void **state)
{
    static const char *const inject[] = {"10.240.3.6 }; table ip evil {"};
    static const char *const outside[] = {"192.168.1.1"};
    struct netpolicy_inst bad[1];
    struct netpolicy good = policy(insts_v1, 2), p;
    char why[512] = "";

    (void)state;
    assert_int_equal(netpolicy_apply(&good, why, sizeof(why)), 0);

    bad[0] = (struct netpolicy_inst){.address = "10.240.3.5; flush ruleset"};
    p = policy(bad, 1);
    refused(&p, "10.240.3.5; flush ruleset", "is not an IPv4 address");
    bad[0] = (struct netpolicy_inst){.address = "10.240.3.5\ntable ip evil {}"};
    refused(&p, "10.240.3.5", "is not an IPv4 address");
    bad[0] = (struct netpolicy_inst){.address = "010.240.3.5x"};
    refused(&p, "010.240.3.5x", "is not an IPv4 address");
    bad[0] = (struct netpolicy_inst){.address = "10.240.4.5"}; /* another host's */
    refused(&p, "10.240.4.5", "in host subnet 10.240.3.0/24");
    bad[0] = (struct netpolicy_inst){.address = "10.240.3.1"}; /* the gateway */
    refused(&p, "10.240.3.1", "other than the gateway");
    bad[0] = (struct netpolicy_inst){.address = NULL};
    refused(&p, "(none)", "is not an IPv4 address");

    bad[0] = (struct netpolicy_inst){.address = "10.240.3.5", .allowed = inject,
                                     .nallowed = 1};
    refused(&p, "table ip evil", "is not an IPv4 address in cluster CIDR");
    bad[0].allowed = outside;
    refused(&p, "192.168.1.1", "is not an IPv4 address in cluster CIDR");

    p = policy(insts_v1, 2);
    p.bridge = "br0\" accept; table ip evil {";
    refused(&p, "br0\" accept", "is not an interface name");
    p.bridge = "averyveryverylongname";
    refused(&p, "averyveryverylongname", "is not an interface name");
    p = policy(insts_v1, 2);
    p.cluster_cidr = "10.240.0.1/16";
    refused(&p, "10.240.0.1/16", "no host bits");
    p.cluster_cidr = "10.240.0.0/33";
    refused(&p, "10.240.0.0/33", "is not an IPv4 network");
    p.cluster_cidr = "10.240.0.0/16 evil";
    refused(&p, "10.240.0.0/16 evil", "is not an IPv4 network");
    p = policy(insts_v1, 2);
    p.subnet = "10.241.3.0/24";
    refused(&p, "10.241.3.0/24", "is not inside cluster CIDR");
    p = policy(insts_v1, 2);
    p.gateway = "10.240.4.1";
    refused(&p, "10.240.4.1", "in host subnet");
}

/* What libnftables refuses is reported in one line, its error; nothing of
 * the script is committed. */
static void
test_nft_error_one_sentence(void **state)
{
    char why[512] = "";
    char *err = NULL;

    (void)state;
    assert_int_equal(netpolicy_run("table inet cloudtmp {}\n"
                                   "table inet cloudtmp { chain c { bogus words } }\n",
                                   "replace table inet cloud", why, sizeof(why)),
                     -1);
    if (strstr(why, "network policy: libnftables refused to replace table inet cloud: ") != why ||
        strstr(why, "syntax error, unexpected '}'") == NULL)
        fail_msg("why: \"%s\"", why);
    assert_null(strchr(why, '\n'));
    /* The first command of the buffer was not committed either. */
    assert_null(nft("list table inet cloudtmp", &err));
    free(err);
}

/* The script is built from parsed values: what goes in is what was meant. */
static void
test_script_text(void **state)
{
    struct netpolicy p = policy(insts_v1, 2);
    char why[512] = "";
    const char *head = "table inet cloud {}\ndelete table inet cloud\n"
                       "table inet cloud {\n";
    char *s = netpolicy_script(&p, why, sizeof(why));

    (void)state;
    assert_non_null(s);
    assert_true(strncmp(s, head, strlen(head)) == 0);
    /* One delete, one table definition: a single transaction. */
    assert_null(strstr(strstr(s, "delete table") + 1, "delete table"));
    assert_null(strstr(s, "flush ruleset"));
    free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_script_text),
        cmocka_unit_test(test_nft_error_one_sentence),
        cmocka_unit_test(test_apply_lists_the_policy),
        cmocka_unit_test(test_update_replaces_everything),
        cmocka_unit_test(test_bad_input_never_reaches_nft),
        cmocka_unit_test(test_remove),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}

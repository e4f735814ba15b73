/*
 * test_virt: the libvirt driver against libvirt's test driver
 * (test:///default, in-process, no daemon): define and start from generated
 * domain XML, re-adopt from metadata, shutdown, destroy, undefine, and the
 * error paths carrying libvirt's own message. The storage pool and overlay
 * volume XML against golden files (tests/golden/virt/, rewritten with
 * UPDATE_GOLDEN=1) and libvirt's RELAX NG schemas, and overlays created on
 * the test driver's storage over a directory whose name needs escaping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <libxml/parser.h>
#include <libxml/relaxng.h>
#include <libxml/xpath.h>

#include "domxml.h"
#include "hv.h"
#include "mem.h"
#include "unit_golden.h"
#include "unit_xml.h"
#include "virt.h"
#include "virt_priv.h"

static const struct virt_driver *drv = &virt_libvirt_driver;

static int
setup(void **state)
{
    struct virt_conn *c = drv->open("test:///default");

    if (c == NULL)
        return -1;
    *state = c;
    return 0;
}

static int
teardown(void **state)
{
    drv->close(*state);
    return 0;
}

static char *
xml_for(const char *id, uint64_t gen)
{
    struct domxml_spec s = {
        .instance_id = id,
        .generation = gen,
        .type = HV_TYPE_TEST,
        .vcpus = 1,
        .memory_mib = 128,
        .kernel = "/images/vmlinuz",
        .initrd = "/images/initrd.img",
        .cmdline = "console=ttyS0 cloud.x=<&>",
        .console_log = "/tmp/console.log",
        .channel_path = "/tmp/config.sock",
        .boot_config_file = "/tmp/boot-config.json",
        .cluster = "c0ffee",
        .owner = "host-a",
    };

    return domxml_build(&s);
}

/* Finds id in a list; returns its index or -1. */
static int
find(const struct virt_domain *d, size_t n, const char *id)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(d[i].instance_id, id) == 0)
            return (int)i;
    return -1;
}

static void
test_host_info(void **state)
{
    struct virt_conn *c = *state;
    struct virt_host_info info;
    struct hv_facts f;

    assert_int_equal(drv->host_info(c, &info), 0);
    assert_true(info.cpus > 0);
    assert_true(info.memory_mib > 0);
    assert_non_null(strstr(info.caps_xml, "<capabilities>"));
    assert_non_null(info.hostname);
    assert_non_null(info.libvirt_version);
    assert_int_equal(hv_probe(info.caps_xml, NULL, &f), 0);
    assert_int_equal(f.chosen, HV_TYPE_TEST);
    hv_facts_clear(&f);
    virt_host_info_clear(&info);
}

static void
test_lifecycle(void **state)
{
    struct virt_conn *c = *state;
    struct virt_domain *doms = NULL;
    enum virt_state st;
    size_t n = 0;
    char *xml;
    int i;

    xml = xml_for("life1", 7);
    assert_non_null(xml);
    assert_int_equal(drv->state(c, "life1", &st), 0);
    assert_int_equal(st, VIRT_STATE_ABSENT);
    assert_int_equal(drv->define_start(c, "life1", xml), 0);
    assert_int_equal(drv->state(c, "life1", &st), 0);
    assert_int_equal(st, VIRT_STATE_RUNNING);
    /* Starting what runs is not an error (level-triggered callers). */
    assert_int_equal(drv->define_start(c, "life1", xml), 0);

    /* Re-adoption: the list comes from the metadata, not from memory. */
    assert_int_equal(drv->list(c, &doms, &n), 0);
    i = find(doms, n, "life1");
    assert_true(i >= 0);
    assert_int_equal(doms[i].generation, 7);
    assert_int_equal(doms[i].state, VIRT_STATE_RUNNING);
    /* ... and so does the owner the worker compares with its own. */
    assert_non_null(doms[i].cluster);
    assert_string_equal(doms[i].cluster, "c0ffee");
    assert_string_equal(doms[i].owner, "host-a");
    /* The test driver's own domain "test" is not ours. */
    assert_int_equal(find(doms, n, "test"), -1);
    virt_domains_free(doms, n);

    /* The test driver powers off at once on an ACPI shutdown. */
    assert_int_equal(drv->shutdown(c, "life1"), 0);
    assert_int_equal(drv->state(c, "life1", &st), 0);
    assert_int_equal(st, VIRT_STATE_SHUTOFF);

    /* A defined, stopped domain is still adopted, with its state. */
    assert_int_equal(drv->list(c, &doms, &n), 0);
    i = find(doms, n, "life1");
    assert_true(i >= 0);
    assert_int_equal(doms[i].state, VIRT_STATE_SHUTOFF);
    virt_domains_free(doms, n);

    assert_int_equal(drv->define_start(c, "life1", xml), 0);
    assert_int_equal(drv->destroy(c, "life1"), 0);
    assert_int_equal(drv->state(c, "life1", &st), 0);
    assert_int_equal(st, VIRT_STATE_SHUTOFF);
    assert_int_equal(drv->destroy(c, "life1"), 0); /* idempotent */
    assert_int_equal(drv->undefine(c, "life1"), 0);
    assert_int_equal(drv->state(c, "life1", &st), 0);
    assert_int_equal(st, VIRT_STATE_ABSENT);
    assert_int_equal(drv->undefine(c, "life1"), 0); /* idempotent */
    assert_int_equal(drv->destroy(c, "life1"), 0);
    free(xml);
}

/* A new generation redefines the domain; adoption reports it. */
static void
test_redefine_generation(void **state)
{
    struct virt_conn *c = *state;
    struct virt_domain *doms = NULL;
    size_t n = 0;
    char *x1 = xml_for("gen1", 1), *x2 = xml_for("gen1", 2);
    int i;

    assert_int_equal(drv->define_start(c, "gen1", x1), 0);
    assert_int_equal(drv->destroy(c, "gen1"), 0);
    assert_int_equal(drv->define_start(c, "gen1", x2), 0);
    assert_int_equal(drv->list(c, &doms, &n), 0);
    i = find(doms, n, "gen1");
    assert_true(i >= 0);
    assert_int_equal(doms[i].generation, 2);
    virt_domains_free(doms, n);
    assert_int_equal(drv->destroy(c, "gen1"), 0);
    assert_int_equal(drv->undefine(c, "gen1"), 0);
    free(x1);
    free(x2);
}

/* cloud-* domains without (matching) metadata are left alone. */
static void
test_list_skips_foreign(void **state)
{
    struct virt_conn *c = *state;
    struct virt_domain *doms = NULL;
    size_t n = 0;
    char *xml = xml_for("real", 5), *p;
    static const char bare[] =
        "<domain type='test'><name>cloud-bare</name><memory unit='MiB'>64</memory>"
        "<os><type>hvm</type></os></domain>";

    /* Same metadata (id "real"), but under another cloud-* name. */
    assert_non_null(xml);
    p = strstr(xml, "<name>cloud-real</name>");
    assert_non_null(p);
    memcpy(p, "<name>cloud-fake</name>", strlen("<name>cloud-fake</name>"));
    assert_int_equal(drv->define_start(c, "fake", xml), 0);
    assert_int_equal(drv->define_start(c, "bare", bare), 0);

    assert_int_equal(drv->list(c, &doms, &n), 0);
    assert_int_equal(find(doms, n, "real"), -1);
    assert_int_equal(find(doms, n, "fake"), -1);
    assert_int_equal(find(doms, n, "bare"), -1);
    virt_domains_free(doms, n);

    assert_int_equal(drv->destroy(c, "fake"), 0);
    assert_int_equal(drv->undefine(c, "fake"), 0);
    assert_int_equal(drv->destroy(c, "bare"), 0);
    assert_int_equal(drv->undefine(c, "bare"), 0);
    free(xml);
}

static void
test_errors_carry_libvirt_text(void **state)
{
    struct virt_conn *c = *state;

    assert_int_equal(
        drv->define_start(c, "broken", "<domain type='test'><name>"), -1);
    assert_non_null(strstr(drv->last_error(c),
                           "instance broken: cannot define the domain: "));
    /* libvirt's own words follow our prefix. */
    assert_true(strlen(drv->last_error(c)) >
                strlen("instance broken: cannot define the domain: ") + 5);

    assert_int_equal(drv->shutdown(c, "nosuch"), -1);
    assert_non_null(strstr(drv->last_error(c), "nosuch"));

    assert_null(drv->open("nosuchdriver:///x"));
    drv->close(NULL);
}

/* ---- storage pool and overlay volume XML ------------------------------ */

/* XML metacharacters of every kind, in a directory name. */
#define NASTY_DIR "/srv/a&b/<c>/\"d\"/'e'"

/* Fails unless xml is valid against libvirt's schema file rng. */
static void
check_schema(const char *xml, const char *rng)
{
    char *path = xasprintf("%s/%s", LIBVIRT_SCHEMA_DIR, rng);

    unit_rng_check(xml, path);
    free(path);
}

static char *
xpath_string(const char *xml, const char *expr)
{
    return unit_xpath_string(xml, expr, NULL, NULL);
}

static void
assert_xpath(const char *xml, const char *expr, const char *want)
{
    char *got = xpath_string(xml, expr);

    assert_string_equal(got, want);
    free(got);
}

static void
test_pool_xml(void **state)
{
    char *xml = virt_pool_xml("cloud-disks-0123abcd",
                              "/var/lib/cloud-agent/disks");

    (void)state;
    assert_non_null(xml);
    unit_golden_check(GOLDEN_DIR, "pool.xml", xml);
    check_schema(xml, "storagepool.rng");
    free(xml);
}

static void
test_volume_xml(void **state)
{
    char *xml = virt_volume_xml(
        "cloud-7f3a9c.qcow2", 10737418240ull,
        "/var/lib/cloud-agent/images/sha256-aa/disk.qcow2", "qcow2");

    (void)state;
    assert_non_null(xml);
    unit_golden_check(GOLDEN_DIR, "volume.xml", xml);
    check_schema(xml, "storagevol.rng");
    assert_xpath(xml, "string(/volume/capacity)", "10737418240");
    free(xml);
}

/* Paths with & < > " ' are escaped by libxml2 and read back intact. */
static void
test_xml_escaping(void **state)
{
    char *pool = virt_pool_xml("cloud-disks-0123abcd", NASTY_DIR);
    char *vol = virt_volume_xml("cloud-esc.qcow2", 1,
                                NASTY_DIR "/</path><evil/>", "raw");

    (void)state;
    assert_non_null(pool);
    assert_non_null(vol);
    unit_golden_check(GOLDEN_DIR, "pool_escaping.xml", pool);
    unit_golden_check(GOLDEN_DIR, "volume_escaping.xml", vol);
    check_schema(pool, "storagepool.rng");
    check_schema(vol, "storagevol.rng");
    assert_null(strstr(vol, "<evil/>"));
    assert_xpath(pool, "string(/pool/target/path)", NASTY_DIR);
    assert_xpath(vol, "string(/volume/backingStore/path)",
                 NASTY_DIR "/</path><evil/>");
    assert_xpath(vol, "string(/volume/backingStore/format/@type)", "raw");
    free(pool);
    free(vol);
}

/* libvirt (its test driver) takes the pool and volume XML: the overlay's
 * path is the escaped directory as it was given. */
static void
test_overlay_on_test_driver(void **state)
{
    struct virt_conn *c = *state;
    char *path = NULL, *again = NULL;

    assert_int_equal(drv->overlay_create(c, NASTY_DIR, "ov1",
                                         "/images/a&b.qcow2", "qcow2",
                                         1024 * 1024, &path),
                     0);
    assert_non_null(path);
    assert_string_equal(path, NASTY_DIR "/cloud-ov1.qcow2");
    /* Kept: a second create finds the volume there. */
    assert_int_equal(drv->overlay_create(c, NASTY_DIR, "ov1",
                                         "/images/a&b.qcow2", "qcow2",
                                         1024 * 1024, &again),
                     0);
    assert_string_equal(again, path);
    assert_int_equal(drv->overlay_delete(c, NASTY_DIR, "ov1"), 0);
    assert_int_equal(drv->overlay_delete(c, NASTY_DIR, "ov1"), 0);
    free(path);
    free(again);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_info),
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_redefine_generation),
        cmocka_unit_test(test_list_skips_foreign),
        cmocka_unit_test(test_errors_carry_libvirt_text),
        cmocka_unit_test(test_pool_xml),
        cmocka_unit_test(test_volume_xml),
        cmocka_unit_test(test_xml_escaping),
        cmocka_unit_test(test_overlay_on_test_driver),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}

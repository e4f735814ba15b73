/*
 * test_domxml: domain XML golden files (tests/golden/domxml/<case>.xml),
 * validation against libvirt's own domain schema, escaping of XML
 * metacharacters, spec validation and the metadata round trip.
 *
 * UPDATE_GOLDEN=1 rewrites the golden files (target update-golden-domxml);
 * review the diff before committing it.
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
#include <libxml/xpathInternals.h>

#include "domxml.h"
#include "mem.h"
#include "unit_golden.h"
#include "unit_xml.h"

static void
check_golden(const char *name, const char *xml)
{
    char *file = xasprintf("%s.xml", name);

    unit_golden_check(GOLDEN_DIR, file, xml);
    free(file);
}

/* Validates xml against libvirt's RELAX NG domain schema. */
static void
check_schema(const char *xml)
{
    unit_rng_check(xml, LIBVIRT_DOMAIN_RNG);
}

/* The string value of an XPath expression over xml (new string); c: is
 * the instance metadata's namespace. */
static char *
xpath_string(const char *xml, const char *expr)
{
    return unit_xpath_string(xml, expr, "c", DOMXML_METADATA_NS);
}

static struct domxml_spec
kernel_spec(void)
{
    struct domxml_spec s = {
        .instance_id = "7f3a9c",
        .generation = 3,
        .type = HV_TYPE_QEMU,
        .vcpus = 2,
        .memory_mib = 256,
        .arch = "x86_64",
        .kernel = "/var/lib/cloud-agent/images/sha256-aa/vmlinuz",
        .initrd = "/var/lib/cloud-agent/images/sha256-bb/initrd.img",
        .cmdline = "console=ttyS0 quiet cloud.role=web",
        .console_log = "/var/log/cloud-agent/console/7f3a9c.log",
        .channel_path = "/run/cloud-agent/7f3a9c/config.sock",
        .boot_config_file = "/run/cloud-agent/7f3a9c/boot-config.json",
        .cluster = "0123456789abcdef0123456789abcdef",
        .owner = "host-1.example",
    };
    return s;
}

static void
golden_case(const char *name, const struct domxml_spec *s)
{
    char *xml = domxml_build(s);

    assert_non_null(xml);
    check_golden(name, xml);
    check_schema(xml);
    free(xml);
}

static void
test_kernel_full(void **state)
{
    struct domxml_spec s = kernel_spec();

    (void)state;
    golden_case("kernel_full", &s);
}

static void
test_kernel_minimal(void **state)
{
    struct domxml_spec s = {
        .instance_id = "min-1",
        .generation = 1,
        .type = HV_TYPE_KVM,
        .vcpus = 1,
        .memory_mib = 64,
        .kernel = "/images/unikernel.bin",
    };

    (void)state;
    golden_case("kernel_minimal", &s);
}

static void
test_disk(void **state)
{
    struct domxml_spec s = {
        .instance_id = "db_0",
        .generation = 12,
        .type = HV_TYPE_KVM,
        .vcpus = 4,
        .memory_mib = 4096,
        .disk = "/var/lib/cloud-agent/instances/db_0/root.qcow2",
        .console_log = "/var/log/cloud-agent/console/db_0.log",
        .channel_path = "/run/cloud-agent/db_0/config.sock",
        .network = "default",
    };

    (void)state;
    golden_case("disk", &s);
}

static void
test_test_driver(void **state)
{
    struct domxml_spec s = kernel_spec();

    (void)state;
    s.type = HV_TYPE_TEST;
    s.arch = NULL;
    s.boot_config_file = NULL;
    golden_case("test_driver", &s);
}

/* A panic device where the architecture has one, with on_crash destroy, so
 * a guest kernel panic ends the domain with reason "crashed". */
static void
test_panic_device(void **state)
{
    struct domxml_spec s = kernel_spec();
    char *xml;

    (void)state;
    assert_string_equal(domxml_panic_model("x86_64"), "isa");
    assert_string_equal(domxml_panic_model("i686"), "isa");
    assert_null(domxml_panic_model("aarch64"));
    assert_null(domxml_panic_model("riscv64"));
#if defined(__x86_64__) || defined(__i386__)
    assert_string_equal(domxml_panic_model(NULL), "isa");
#endif
    s.arch = "x86_64";
    xml = domxml_build(&s);
    assert_non_null(xml);
    assert_non_null(strstr(xml, "<panic model=\"isa\"/>"));
    assert_non_null(strstr(xml, "<on_crash>destroy</on_crash>"));
    check_schema(xml);
    free(xml);
    s.arch = "riscv64";
    xml = domxml_build(&s);
    assert_non_null(xml);
    assert_null(strstr(xml, "<panic"));
    free(xml);
}

/* Metacharacters are escaped by libxml2 and come back intact. */
static void
test_escaping(void **state)
{
    const char *cmdline =
        "console=ttyS0 cloud.msg=\"a<b && c>d\" cloud.q='x' cloud.e=&amp; </cmdline><evil/>";
    struct domxml_spec s = kernel_spec();
    char *xml, *got;

    (void)state;
    s.instance_id = "esc";
    s.cmdline = cmdline;
    s.console_log = "/var/log/a&b/<c>.log";
    xml = domxml_build(&s);
    assert_non_null(xml);
    check_golden("escaping", xml);
    check_schema(xml);
    assert_null(strstr(xml, "<evil/>"));
    got = xpath_string(xml, "string(/domain/os/cmdline)");
    assert_string_equal(got, cmdline);
    free(got);
    got = xpath_string(xml, "string(/domain/devices/serial/source/@path)");
    assert_string_equal(got, "/var/log/a&b/<c>.log");
    free(got);
    got = xpath_string(xml, "string(/domain/metadata/c:instance/c:id)");
    assert_string_equal(got, "esc");
    free(got);
    free(xml);
}

static void
test_invalid_specs(void **state)
{
    struct domxml_spec s;

    (void)state;
    s = kernel_spec();
    s.instance_id = "../etc";
    assert_null(domxml_build(&s));
    s.instance_id = "";
    assert_null(domxml_build(&s));
    s.instance_id =
        "a-very-long-id-a-very-long-id-a-very-long-id-a-very-long-id-xxxxx";
    assert_null(domxml_build(&s));

    s = kernel_spec();
    s.disk = "/x.qcow2";
    s.kernel = NULL; /* disk with initrd/cmdline but no kernel */
    assert_null(domxml_build(&s));
    s = kernel_spec();
    s.kernel = NULL; /* neither */
    assert_null(domxml_build(&s));

    s = kernel_spec();
    s.kernel = "relative/vmlinuz";
    assert_null(domxml_build(&s));
    s = kernel_spec();
    s.cmdline = "console=ttyS0\x01";
    assert_null(domxml_build(&s));
    s = kernel_spec();
    s.cmdline = "bad utf8 \xff\xfe";
    assert_null(domxml_build(&s));
    s = kernel_spec();
    s.vcpus = 0;
    assert_null(domxml_build(&s));
    s = kernel_spec();
    s.type = HV_TYPE_NONE;
    assert_null(domxml_build(&s));
    s = kernel_spec();
    s.arch = "x86'64";
    assert_null(domxml_build(&s));
    s = kernel_spec();
    s.network = "my net"; /* --network names a libvirt network: a word */
    assert_null(domxml_build(&s));
    s.network = "";
    assert_null(domxml_build(&s));
    /* Paths libvirt or QEMU would mangle on the fw_cfg option. */
    s = kernel_spec();
    s.boot_config_file = "/run/a,b.json";
    assert_null(domxml_build(&s));
    s.boot_config_file = "/run/a&b.json";
    assert_null(domxml_build(&s));
    s.boot_config_file = "relative.json";
    assert_null(domxml_build(&s));
}

static void
test_metadata_roundtrip(void **state)
{
    struct domxml_spec s = kernel_spec();
    char *xml, *md, *id = NULL;
    uint64_t gen = 0;

    (void)state;
    s.generation = UINT64_MAX;
    xml = domxml_build(&s);
    assert_non_null(xml);
    /* What virDomainGetMetadata hands back: the element alone, possibly with
     * another prefix. Cut ours out of the document. */
    md = xstrndup(strstr(xml, "<cloud:instance"),
                  (size_t)(strstr(xml, "</cloud:instance>") + 17 -
                           strstr(xml, "<cloud:instance")));
    assert_int_equal(domxml_metadata_parse(md, &id, &gen), 0);
    assert_string_equal(id, "7f3a9c");
    assert_true(gen == UINT64_MAX);
    free(id);
    free(md);
    free(xml);

    assert_int_equal(
        domxml_metadata_parse("<x:instance xmlns:x='" DOMXML_METADATA_NS
                              "'><x:id>abc</x:id>"
                              "<x:generation>42</x:generation></x:instance>",
                              &id, &gen),
        0);
    assert_string_equal(id, "abc");
    assert_int_equal(gen, 42);
    free(id);

    /* The shape virDomainGetMetadata really returns: namespace stripped. */
    assert_int_equal(
        domxml_metadata_parse("<instance>\n  <id>a</id>\n"
                              "  <generation>3</generation>\n</instance>",
                              &id, &gen),
        0);
    assert_string_equal(id, "a");
    assert_int_equal(gen, 3);
    free(id);
}

static void
test_metadata_malformed(void **state)
{
    static const char *const bad[] = {
        "not xml",
        "<inst><id>a</id><generation>1</generation></inst>",
        "<c:instance xmlns:c='urn:other'><c:id>a</c:id><c:generation>1</c:generation></c:instance>",
        "<c:instance xmlns:c='" DOMXML_METADATA_NS
        "'><c:id>a</c:id></c:instance>",
        "<c:instance xmlns:c='" DOMXML_METADATA_NS
        "'><c:id>a/b</c:id><c:generation>1</c:generation></c:instance>",
        "<c:instance xmlns:c='" DOMXML_METADATA_NS
        "'><c:id>a</c:id><c:generation>-1</c:generation></c:instance>",
        "<c:instance xmlns:c='" DOMXML_METADATA_NS
        "'><c:id>a</c:id><c:generation>1x</c:generation></c:instance>",
        "<c:instance xmlns:c='" DOMXML_METADATA_NS
        "'><c:id>a</c:id><c:generation>99999999999999999999</c:generation></c:instance>",
    };
    char *id = NULL;
    uint64_t gen;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(domxml_metadata_parse(bad[i], &id, &gen), -1);
        assert_null(id);
    }
}

/* The owner round-trips; a domain without one is legacy. */
static void
test_metadata_owner(void **state)
{
    struct domxml_spec s = kernel_spec();
    char *xml, *md, *cluster = NULL, *owner = NULL;
    static const char *const bad[] = {
        "not xml",
        "<instance><id>a</id><generation>1</generation><cluster>c</cluster></instance>",
        "<instance><id>a</id><generation>1</generation><host>h</host></instance>",
        "<instance><id>a</id><generation>1</generation><cluster>c d</cluster><host>h</host></instance>",
        "<instance><id>a</id><generation>1</generation><cluster>c</cluster><host></host></instance>",
    };
    size_t i;

    (void)state;
    xml = domxml_build(&s);
    assert_non_null(xml);
    md = xstrndup(strstr(xml, "<cloud:instance"),
                  (size_t)(strstr(xml, "</cloud:instance>") + 17 -
                           strstr(xml, "<cloud:instance")));
    assert_int_equal(domxml_metadata_owner(md, &cluster, &owner), 0);
    assert_string_equal(cluster, "0123456789abcdef0123456789abcdef");
    assert_string_equal(owner, "host-1.example");
    free(cluster);
    free(owner);
    free(md);
    free(xml);

    /* Written by an agent older than ownership: no owner, no error. */
    assert_int_equal(
        domxml_metadata_owner("<instance><id>a</id><generation>3</generation>"
                              "</instance>",
                              &cluster, &owner),
        0);
    assert_null(cluster);
    assert_null(owner);
    /* Namespace stripped, as virDomainGetMetadata hands it back. */
    assert_int_equal(
        domxml_metadata_owner("<instance><id>a</id><generation>3</generation>"
                              "<cluster>c1</cluster><host>h1</host></instance>",
                              &cluster, &owner),
        0);
    assert_string_equal(cluster, "c1");
    assert_string_equal(owner, "h1");
    free(cluster);
    free(owner);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(domxml_metadata_owner(bad[i], &cluster, &owner), -1);
        assert_null(cluster);
        assert_null(owner);
    }

    /* One without the other, or a bad character, is refused. */
    s.owner = NULL;
    assert_null(domxml_build(&s));
    s.owner = "host 1";
    assert_null(domxml_build(&s));
}

static void
test_owner_rule(void **state)
{
    (void)state;
    assert_int_equal(domxml_owner_check("c1", "h1", "c1", "h1"), DOMXML_MINE);
    assert_int_equal(domxml_owner_check("c1", "h1", "c2", "h1"),
                     DOMXML_FOREIGN);
    assert_int_equal(domxml_owner_check("c1", "h1", "c1", "h2"),
                     DOMXML_FOREIGN);
    assert_int_equal(domxml_owner_check("c1", "h1", NULL, NULL),
                     DOMXML_LEGACY);
    /* An agent without an identity owns every owned domain, as before. */
    assert_int_equal(domxml_owner_check(NULL, NULL, "c2", "h2"), DOMXML_MINE);
}

static void
test_domain_name(void **state)
{
    char *n = domxml_domain_name("abc");

    (void)state;
    assert_string_equal(n, "cloud-abc");
    free(n);
}

/* Instance ids: what the console log directory and requests may name. */
static void
test_id_ok(void **state)
{
    char longest[DOMXML_ID_MAX + 2];

    (void)state;
    assert_true(domxml_id_ok("web-1_A9"));
    memset(longest, 'x', DOMXML_ID_MAX);
    longest[DOMXML_ID_MAX] = '\0';
    assert_true(domxml_id_ok(longest));
    longest[DOMXML_ID_MAX] = 'x';
    longest[DOMXML_ID_MAX + 1] = '\0';
    assert_false(domxml_id_ok(longest));
    assert_false(domxml_id_ok(""));
    assert_false(domxml_id_ok(NULL));
    assert_false(domxml_id_ok("."));
    assert_false(domxml_id_ok(".."));
    assert_false(domxml_id_ok("a/b"));
    assert_false(domxml_id_ok("a b"));
}

/* Stable per id, distinct across ids, shaped like a UUID. */
static void
test_uuid(void **state)
{
    char *a = domxml_uuid("abc"), *a2 = domxml_uuid("abc"),
         *b = domxml_uuid("abd");

    (void)state;
    assert_string_equal(a, a2);
    assert_string_not_equal(a, b);
    assert_int_equal(strlen(a), 36);
    assert_int_equal(a[8], '-');
    assert_int_equal(a[14], '8'); /* version nibble */
    assert_non_null(strchr("89ab", a[19]));
    free(a);
    free(a2);
    free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_full),
        cmocka_unit_test(test_kernel_minimal),
        cmocka_unit_test(test_disk),
        cmocka_unit_test(test_test_driver),
        cmocka_unit_test(test_panic_device),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_invalid_specs),
        cmocka_unit_test(test_metadata_roundtrip),
        cmocka_unit_test(test_metadata_malformed),
        cmocka_unit_test(test_metadata_owner),
        cmocka_unit_test(test_owner_rule),
        cmocka_unit_test(test_domain_name),
        cmocka_unit_test(test_id_ok),
        cmocka_unit_test(test_uuid),
    };
    int rc;

    rc = cmocka_run_group_tests(tests, NULL, NULL);
    xmlCleanupParser();
    return rc;
}

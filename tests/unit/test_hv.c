/*
 * test_hv: hypervisor detection with fake capabilities XML, fake cpuinfo
 * files and fake /dev/kvm paths. The case that matters most is the one this
 * machine is in: libvirt lists kvm and /dev/kvm exists, but the CPU has no
 * vmx/svm flag, so kvm guests would hang and qemu (TCG) must be chosen.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hv.h"
#include "mem.h"

static const char caps_qemu_kvm[] =
    "<capabilities><host><cpu><arch>x86_64</arch></cpu></host>"
    "<guest><os_type>hvm</os_type><arch name='i686'><domain type='qemu'/></arch></guest>"
    "<guest><os_type>hvm</os_type><arch name='x86_64'><wordsize>64</wordsize>"
    "<domain type='qemu'/><domain type='kvm'/></arch></guest></capabilities>";
static const char caps_qemu_only[] =
    "<capabilities><host><cpu><arch>x86_64</arch></cpu></host>"
    "<guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/></arch></guest>"
    "</capabilities>";
/* Shaped like libvirt's test driver: host i686, guests of other arches. */
static const char caps_test[] =
    "<capabilities><host><cpu><arch>i686</arch></cpu></host>"
    "<guest><os_type>hvm</os_type><arch name='x86_64'><domain type='test'/></arch></guest>"
    "<guest><os_type>xen</os_type><arch name='x86_64'><domain type='test'/></arch></guest>"
    "</capabilities>";
static const char caps_xen[] =
    "<capabilities><host><cpu><arch>x86_64</arch></cpu></host>"
    "<guest><os_type>xen</os_type><arch name='x86_64'><domain type='xen'/></arch></guest>"
    "</capabilities>";

struct fixture {
    char dir[64];
    char *vmx, *svm, *none, *tricky, *missing;
};

static char *
write_file(const char *dir, const char *name, const char *content)
{
    char *path = xasprintf("%s/%s", dir, name);
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
    return path;
}

static int
setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));

    xstrlcpy(f->dir, "/tmp/test_hv.XXXXXX", sizeof(f->dir));
    if (mkdtemp(f->dir) == NULL)
        return -1;
    f->vmx =
        write_file(f->dir, "vmx",
                   "processor\t: 0\nflags\t\t: fpu vme de pse msr vmx sse2\n\n"
                   "processor\t: 1\nflags\t\t: fpu vme de pse msr vmx sse2\n");
    f->svm = write_file(f->dir, "svm", "processor\t: 0\nflags\t\t: fpu svm\n");
    f->none = write_file(f->dir, "none",
                         "processor\t: 0\nmodel name\t: vmx svm in a name\n"
                         "flags\t\t: fpu vme de pse hypervisor\n"
                         "vmx flags\t: this line is not a flags line\n");
    /* Substrings of other flags must not count. */
    f->tricky =
        write_file(f->dir, "tricky", "flags\t\t: fpu vmxe xsvm svm_lock\n");
    f->missing = xasprintf("%s/does-not-exist", f->dir);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    unlink(f->vmx);
    unlink(f->svm);
    unlink(f->none);
    unlink(f->tricky);
    rmdir(f->dir);
    free(f->vmx);
    free(f->svm);
    free(f->none);
    free(f->tricky);
    free(f->missing);
    free(f);
    return 0;
}

static void
test_cpuinfo(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(hv_cpuinfo_has_virt(f->vmx), 1);
    assert_int_equal(hv_cpuinfo_has_virt(f->svm), 1);
    assert_int_equal(hv_cpuinfo_has_virt(f->none), 0);
    assert_int_equal(hv_cpuinfo_has_virt(f->tricky), 0);
    assert_int_equal(hv_cpuinfo_has_virt(f->missing), -1);
}

static void
test_type_names(void **state)
{
    enum hv_type t = HV_TYPE_NONE;

    (void)state;
    assert_int_equal(hv_type_parse("kvm", &t), 0);
    assert_int_equal(t, HV_TYPE_KVM);
    assert_int_equal(hv_type_parse("qemu", &t), 0);
    assert_int_equal(t, HV_TYPE_QEMU);
    assert_int_equal(hv_type_parse("test", &t), 0);
    assert_int_equal(t, HV_TYPE_TEST);
    assert_int_equal(hv_type_parse("none", &t), -1);
    assert_int_equal(hv_type_parse("xen", &t), -1);
    assert_string_equal(hv_type_name(HV_TYPE_KVM), "kvm");
    assert_string_equal(hv_type_name((enum hv_type)99), "none");
}

/* /dev/null stands in for an openable /dev/kvm. */
static void
test_kvm_when_everything_agrees(void **state)
{
    struct fixture *f = *state;
    struct hv_probe_opts o = {.cpuinfo_path = f->vmx,
                              .kvm_dev_path = "/dev/null"};
    struct hv_facts h;

    assert_int_equal(hv_probe(caps_qemu_kvm, &o, &h), 0);
    assert_string_equal(h.arch, "x86_64");
    assert_int_equal(h.ntypes, 2);
    assert_string_equal(h.types[0], "qemu");
    assert_string_equal(h.types[1], "kvm");
    assert_true(h.kvm_listed && h.kvm_dev && h.cpu_virt && h.kvm_usable);
    assert_int_equal(h.chosen, HV_TYPE_KVM);
    hv_facts_clear(&h);
}

/* libvirt says kvm and /dev/kvm opens, but the CPU has no vmx/svm. */
static void
test_qemu_without_cpu_flags(void **state)
{
    struct fixture *f = *state;
    struct hv_probe_opts o = {.cpuinfo_path = f->none,
                              .kvm_dev_path = "/dev/null"};
    struct hv_facts h;

    assert_int_equal(hv_probe(caps_qemu_kvm, &o, &h), 0);
    assert_true(h.kvm_listed);
    assert_true(h.kvm_dev);
    assert_false(h.cpu_virt);
    assert_false(h.kvm_usable);
    assert_int_equal(h.chosen, HV_TYPE_QEMU);
    hv_facts_clear(&h);

    /* Unreadable cpuinfo never leads to kvm either. */
    o.cpuinfo_path = f->missing;
    assert_int_equal(hv_probe(caps_qemu_kvm, &o, &h), 0);
    assert_int_equal(h.chosen, HV_TYPE_QEMU);
    hv_facts_clear(&h);
}

static void
test_qemu_without_kvm_device(void **state)
{
    struct fixture *f = *state;
    struct hv_probe_opts o = {.cpuinfo_path = f->svm,
                              .kvm_dev_path = f->missing};
    struct hv_facts h;

    assert_int_equal(hv_probe(caps_qemu_kvm, &o, &h), 0);
    assert_false(h.kvm_dev);
    assert_true(h.cpu_virt);
    assert_int_equal(h.chosen, HV_TYPE_QEMU);
    hv_facts_clear(&h);

    /* Flags and device, but libvirt does not offer kvm. */
    o.kvm_dev_path = "/dev/null";
    assert_int_equal(hv_probe(caps_qemu_only, &o, &h), 0);
    assert_false(h.kvm_usable);
    assert_int_equal(h.chosen, HV_TYPE_QEMU);
    hv_facts_clear(&h);
}

static void
test_test_driver(void **state)
{
    struct fixture *f = *state;
    struct hv_probe_opts o = {.cpuinfo_path = f->vmx,
                              .kvm_dev_path = "/dev/null"};
    struct hv_facts h;

    assert_int_equal(hv_probe(caps_test, &o, &h), 0);
    assert_string_equal(h.arch, "i686");
    assert_int_equal(h.ntypes, 1);
    assert_string_equal(h.types[0], "test");
    assert_int_equal(h.chosen, HV_TYPE_TEST);
    hv_facts_clear(&h);
}

static void
test_override(void **state)
{
    struct fixture *f = *state;
    struct hv_probe_opts o = {.cpuinfo_path = f->vmx,
                              .kvm_dev_path = "/dev/null",
                              .override = HV_TYPE_QEMU};
    struct hv_facts h;

    assert_int_equal(hv_probe(caps_qemu_kvm, &o, &h), 0);
    assert_true(h.kvm_usable);
    assert_int_equal(h.chosen, HV_TYPE_QEMU);
    hv_facts_clear(&h);

    /* Forcing kvm where it looks unusable is allowed (with a warning). */
    o.cpuinfo_path = f->none;
    o.override = HV_TYPE_KVM;
    assert_int_equal(hv_probe(caps_qemu_kvm, &o, &h), 0);
    assert_false(h.kvm_usable);
    assert_int_equal(h.chosen, HV_TYPE_KVM);
    hv_facts_clear(&h);

    /* A type libvirt does not offer cannot be forced. */
    o.override = HV_TYPE_TEST;
    assert_int_equal(hv_probe(caps_qemu_kvm, &o, &h), -1);
    hv_facts_clear(&h);
    o.override = HV_TYPE_KVM;
    assert_int_equal(hv_probe(caps_qemu_only, &o, &h), -1);
    hv_facts_clear(&h);
}

static void
test_unusable_caps(void **state)
{
    struct fixture *f = *state;
    struct hv_probe_opts o = {.cpuinfo_path = f->vmx,
                              .kvm_dev_path = "/dev/null"};
    struct hv_facts h;

    assert_int_equal(hv_probe(caps_xen, &o, &h), -1);
    hv_facts_clear(&h);
    assert_int_equal(hv_probe("<capabilities><host>", &o, &h), -1);
    hv_facts_clear(&h);
    assert_int_equal(hv_probe("<capabilities/>", &o, &h), -1);
    hv_facts_clear(&h);
    hv_facts_clear(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpuinfo),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_kvm_when_everything_agrees),
        cmocka_unit_test(test_qemu_without_cpu_flags),
        cmocka_unit_test(test_qemu_without_kvm_device),
        cmocka_unit_test(test_test_driver),
        cmocka_unit_test(test_override),
        cmocka_unit_test(test_unusable_caps),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}

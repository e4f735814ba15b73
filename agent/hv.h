/*
 * hv: hypervisor detection. Decides which libvirt domain type the agent
 * uses on this host from libvirt's capabilities XML plus what the host can
 * really do: libvirt lists "kvm" whenever /dev/kvm exists, yet a KVM guest
 * hangs on a CPU without vmx/svm (nested setups, some containers), so kvm is
 * chosen only if /dev/kvm opens AND /proc/cpuinfo shows vmx or svm.
 *
 * Pure apart from reading the two host files named in hv_probe_opts; the
 * capabilities XML comes from the virt driver, so tests feed fakes.
 */
#ifndef CLOUD_AGENT_HV_H
#define CLOUD_AGENT_HV_H

#include <stdbool.h>
#include <stddef.h>

enum hv_type {
    HV_TYPE_NONE = 0, /* nothing usable / no override */
    HV_TYPE_QEMU,     /* QEMU with TCG: slow, works everywhere */
    HV_TYPE_KVM,
    HV_TYPE_TEST, /* libvirt's test driver: simulation, no guests run */
};

#define HV_CPUINFO_PATH "/proc/cpuinfo"
#define HV_KVM_DEV_PATH "/dev/kvm"

struct hv_probe_opts {
    const char *cpuinfo_path; /* NULL: HV_CPUINFO_PATH */
    const char *kvm_dev_path; /* NULL: HV_KVM_DEV_PATH */
    enum hv_type override;    /* HV_TYPE_NONE: decide from the facts */
};

struct hv_facts {
    char *arch;   /* host arch from capabilities, e.g. "x86_64" */
    char **types; /* domain types libvirt offers for the host arch */
    size_t ntypes;
    bool kvm_listed; /* libvirt's capabilities offer kvm */
    bool kvm_dev;    /* /dev/kvm opened read-write */
    bool cpu_virt;   /* cpuinfo flags include vmx or svm */
    bool kvm_usable; /* all three above */
    enum hv_type chosen;
};

/* "qemu", "kvm", "test" or "none". */
const char *hv_type_name(enum hv_type t);
/* Parses "qemu", "kvm" or "test"; -1 for anything else. */
int hv_type_parse(const char *s, enum hv_type *tp);

/* 1 if the cpuinfo file at path has a vmx or svm flag, 0 if not, -1 on error.
 */
int hv_cpuinfo_has_virt(const char *path);

/*
 * Fills f from libvirt capabilities XML and the host files, and picks the
 * domain type: the override if given, else test if libvirt offers it (the
 * test driver), else kvm if usable, else qemu. Returns -1 (logged) if the
 * XML cannot be parsed or no offered type is usable, or if the override is
 * not offered by libvirt. Clear f with hv_facts_clear() either way.
 */
int hv_probe(const char *caps_xml, const struct hv_probe_opts *opts,
             struct hv_facts *f);

void hv_facts_clear(struct hv_facts *f);

#endif

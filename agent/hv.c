/*
 * hv: picks the libvirt domain type for this host (see hv.h). Owns nothing
 * beyond the hv_facts it fills.
 */
#define LOG_MODULE "hv"

#include "hv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/xpath.h>

#include "log.h"
#include "mem.h"

static const char *const hv_type_names[] = {
    [HV_TYPE_NONE] = "none",
    [HV_TYPE_QEMU] = "qemu",
    [HV_TYPE_KVM] = "kvm",
    [HV_TYPE_TEST] = "test",
};

const char *
hv_type_name(enum hv_type t)
{
    if ((size_t)t >= sizeof(hv_type_names) / sizeof(hv_type_names[0]))
        return "none";
    return hv_type_names[t];
}

int
hv_type_parse(const char *s, enum hv_type *tp)
{
    enum hv_type t;

    for (t = HV_TYPE_QEMU; t <= HV_TYPE_TEST; t++) {
        if (strcmp(s, hv_type_names[t]) == 0) {
            *tp = t;
            return 0;
        }
    }
    return -1;
}

/* True if the whitespace-separated list s contains word. */
static int
hv_has_word(const char *s, const char *word)
{
    size_t wl = strlen(word);
    const char *p = s;

    while ((p = strstr(p, word)) != NULL) {
        int start = p == s || p[-1] == ' ' || p[-1] == '\t';
        int end =
            p[wl] == '\0' || p[wl] == ' ' || p[wl] == '\t' || p[wl] == '\n';
        if (start && end)
            return 1;
        p += wl;
    }
    return 0;
}

int
hv_cpuinfo_has_virt(const char *path)
{
    FILE *fp;
    char *line = NULL;
    size_t cap = 0;
    int found = 0;

    fp = fopen(path, "r");
    if (fp == NULL) {
        log_warn("cannot open %s", path);
        return -1;
    }
    while (getline(&line, &cap, fp) != -1) {
        const char *colon;

        /* x86 lists CPU features on "flags" lines. */
        if (strncmp(line, "flags", 5) != 0 ||
            (colon = strchr(line, ':')) == NULL)
            continue;
        if (hv_has_word(colon + 1, "vmx") || hv_has_word(colon + 1, "svm")) {
            found = 1;
            break;
        }
    }
    free(line);
    fclose(fp);
    return found;
}

static int
hv_kvm_dev_opens(const char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);

    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

static void
hv_add_type(struct hv_facts *f, const char *t)
{
    size_t i;

    for (i = 0; i < f->ntypes; i++)
        if (strcmp(f->types[i], t) == 0)
            return;
    f->types = xrealloc(f->types, (f->ntypes + 1) * sizeof(*f->types));
    f->types[f->ntypes++] = xstrdup(t);
}

static int
hv_offers(const struct hv_facts *f, enum hv_type t)
{
    size_t i;

    for (i = 0; i < f->ntypes; i++)
        if (strcmp(f->types[i], hv_type_name(t)) == 0)
            return 1;
    return 0;
}

/* Collects the string values of an XPath expression into f->types. */
static int
hv_collect_types(xmlXPathContextPtr ctx, const char *expr, struct hv_facts *f)
{
    xmlXPathObjectPtr obj;
    int i, n;

    obj = xmlXPathEvalExpression((const xmlChar *)expr, ctx);
    if (obj == NULL)
        return -1;
    n = obj->nodesetval ? obj->nodesetval->nodeNr : 0;
    for (i = 0; i < n; i++) {
        xmlChar *v = xmlNodeGetContent(obj->nodesetval->nodeTab[i]);
        if (v != NULL && *v != '\0')
            hv_add_type(f, (const char *)v);
        xmlFree(v);
    }
    xmlXPathFreeObject(obj);
    return 0;
}

static int
hv_parse_caps(const char *caps_xml, struct hv_facts *f)
{
    xmlDocPtr doc = NULL;
    xmlXPathContextPtr ctx = NULL;
    xmlXPathObjectPtr obj = NULL;
    char *expr = NULL;
    int ret = -1;

    doc = xmlReadMemory(
        caps_xml, (int)strlen(caps_xml), "capabilities.xml", NULL,
        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (doc == NULL) {
        log_warnx("libvirt capabilities are not well-formed XML");
        goto cleanup;
    }
    ctx = xmlXPathNewContext(doc);
    if (ctx == NULL)
        fatalx("cannot allocate an XPath context");
    obj = xmlXPathEvalExpression(
        (const xmlChar *)"string(/capabilities/host/cpu/arch)", ctx);
    if (obj == NULL || obj->type != XPATH_STRING || obj->stringval == NULL ||
        obj->stringval[0] == '\0') {
        log_warnx("libvirt capabilities name no host arch");
        goto cleanup;
    }
    f->arch = xstrdup((const char *)obj->stringval);

    /* Types for guests of the host arch; the arch name is not attacker
     * controlled (it comes from our own libvirtd) but quote-free anyway. */
    if (strchr(f->arch, '\'') != NULL) {
        log_warnx("libvirt capabilities name an odd host arch");
        goto cleanup;
    }
    expr = xasprintf("/capabilities/guest[arch/@name='%s']/arch/domain/@type",
                     f->arch);
    if (hv_collect_types(ctx, expr, f) < 0)
        goto cleanup;
    /* libvirt's test driver reports host arch i686 but offers x86_64 too;
     * with no guest of the host arch, take every offered type. */
    if (f->ntypes == 0 &&
        hv_collect_types(ctx, "/capabilities/guest/arch/domain/@type", f) < 0)
        goto cleanup;
    ret = 0;

cleanup:
    free(expr);
    xmlXPathFreeObject(obj);
    xmlXPathFreeContext(ctx);
    xmlFreeDoc(doc);
    return ret;
}

int
hv_probe(const char *caps_xml, const struct hv_probe_opts *opts,
         struct hv_facts *f)
{
    const char *cpuinfo =
        opts && opts->cpuinfo_path ? opts->cpuinfo_path : HV_CPUINFO_PATH;
    const char *kvmdev =
        opts && opts->kvm_dev_path ? opts->kvm_dev_path : HV_KVM_DEV_PATH;
    enum hv_type override = opts ? opts->override : HV_TYPE_NONE;

    memset(f, 0, sizeof(*f));
    if (hv_parse_caps(caps_xml, f) < 0)
        return -1;
    f->kvm_listed = hv_offers(f, HV_TYPE_KVM);
    f->kvm_dev = hv_kvm_dev_opens(kvmdev);
    /* Unreadable cpuinfo counts as "no flags": never guess kvm. */
    f->cpu_virt = hv_cpuinfo_has_virt(cpuinfo) == 1;
    f->kvm_usable = f->kvm_listed && f->kvm_dev && f->cpu_virt;

    if (override != HV_TYPE_NONE) {
        if (!hv_offers(f, override)) {
            log_warnx(
                "hypervisor %s was requested but libvirt does not offer it on this host",
                hv_type_name(override));
            return -1;
        }
        if (override == HV_TYPE_KVM && !f->kvm_usable)
            log_warnx(
                "hypervisor kvm forced although it looks unusable (/dev/kvm %s, vmx/svm %s)",
                f->kvm_dev ? "opens" : "does not open",
                f->cpu_virt ? "present" : "absent");
        f->chosen = override;
    } else if (hv_offers(f, HV_TYPE_TEST)) {
        f->chosen = HV_TYPE_TEST;
    } else if (f->kvm_usable) {
        f->chosen = HV_TYPE_KVM;
    } else if (hv_offers(f, HV_TYPE_QEMU)) {
        f->chosen = HV_TYPE_QEMU;
    } else {
        log_warnx(
            "libvirt offers no usable domain type for arch %s (need kvm, qemu or test)",
            f->arch);
        return -1;
    }
    return 0;
}

void
hv_facts_clear(struct hv_facts *f)
{
    size_t i;

    if (f == NULL)
        return;
    for (i = 0; i < f->ntypes; i++)
        free(f->types[i]);
    free(f->types);
    free(f->arch);
    memset(f, 0, sizeof(*f));
}

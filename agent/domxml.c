/*
 * domxml: builds libvirt domain XML from a domxml_spec and parses the
 * instance metadata element back (see domxml.h). Owns no state.
 *
 * Text goes in with xmlNewTextChild(), never xmlNewChild(): the latter takes
 * its content as already-escaped markup, so a '&' in a kernel cmdline would
 * be read as an entity reference.
 */
#define LOG_MODULE "domxml"

#include "domxml.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>

#include "log.h"
#include "mem.h"

bool
domxml_id_ok(const char *s)
{
    size_t i, n = s ? strlen(s) : 0;

    if (n == 0 || n > DOMXML_ID_MAX)
        return false;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

int
domxml_owner_valid(const char *s)
{
    size_t i, n = s ? strlen(s) : 0;

    if (n == 0 || n > DOMXML_OWNER_MAX)
        return -1;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
              c == ':'))
            return -1;
    }
    return 0;
}

enum domxml_ownership
domxml_owner_check(const char *my_cluster, const char *my_owner,
                   const char *cluster, const char *owner)
{
    if (cluster == NULL || owner == NULL)
        return DOMXML_LEGACY;
    if (my_cluster == NULL || my_owner == NULL)
        return DOMXML_MINE;
    if (strcmp(my_cluster, cluster) == 0 && strcmp(my_owner, owner) == 0)
        return DOMXML_MINE;
    return DOMXML_FOREIGN;
}

int
domxml_id_valid(const char *id)
{
    if (!domxml_id_ok(id)) {
        log_warnx("instance id %.*s is not 1 to %d characters of [A-Za-z0-9_-]",
                  DOMXML_ID_MAX, id ? id : "(null)", DOMXML_ID_MAX);
        return -1;
    }
    return 0;
}

char *
domxml_domain_name(const char *instance_id)
{
    return xasprintf(DOMXML_NAME_PREFIX "%s", instance_id);
}

/*
 * Decodes one UTF-8 sequence at p strictly: no over-long forms, no
 * surrogates, nothing above U+10FFFF. Returns its length, 0 if invalid.
 * xmlCheckUTF8() is not enough: it lets over-long forms such as C0 BC (an
 * over-long '<') through, which libxml2 then writes out verbatim and no
 * strict parser reads back (fuzz_domxml found it).
 */
static size_t
domxml_utf8_char(const unsigned char *p, uint32_t *cp)
{
    size_t n, i;
    uint32_t c;

    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        c = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3;
        c = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        c = p[0] & 0x07;
    } else {
        return 0;
    }
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) /* also stops at the NUL */
            return 0;
        c = c << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

/*
 * Values must be UTF-8 of XML 1.0 characters: no control characters other
 * than tab and newline (libxml2 would write those as character references
 * that are themselves invalid XML 1.0), and no U+FFFE or U+FFFF (written
 * verbatim); libvirt would refuse the document.
 */
static int
domxml_text_ok(const char *id, const char *what, const char *s)
{
    const unsigned char *p;
    uint32_t c;
    size_t n;

    if (s == NULL)
        return 0;
    for (p = (const unsigned char *)s; *p; p += n) {
        n = domxml_utf8_char(p, &c);
        if (n == 0) {
            log_warnx("instance %s: %s is not valid UTF-8", id, what);
            return -1;
        }
        if (c < 0x20 && c != '\t' && c != '\n') {
            log_warnx("instance %s: %s contains control character 0x%02x", id,
                      what, (unsigned)c);
            return -1;
        }
        if (c == 0xfffe || c == 0xffff) {
            log_warnx("instance %s: %s contains U+%04X, which XML 1.0 does not allow",
                      id, what, (unsigned)c);
            return -1;
        }
    }
    return 0;
}

static int
domxml_path_ok(const char *id, const char *what, const char *path)
{
    if (path == NULL)
        return 0;
    if (path[0] != '/') {
        log_warnx("instance %s: %s path %s is not absolute", id, what, path);
        return -1;
    }
    return domxml_text_ok(id, what, path);
}

static int
domxml_spec_check(const struct domxml_spec *s)
{
    const char *id = s->instance_id;

    if (domxml_id_valid(id) < 0)
        return -1;
    if (s->type != HV_TYPE_QEMU && s->type != HV_TYPE_KVM &&
        s->type != HV_TYPE_TEST) {
        log_warnx("instance %s: domain type %s is not qemu, kvm or test", id,
                  hv_type_name(s->type));
        return -1;
    }
    if (s->vcpus == 0 || s->memory_mib == 0) {
        log_warnx(
            "instance %s: needs at least 1 vcpu and 1 MiB of memory (got %u, %" PRIu64
            ")",
            id, s->vcpus, s->memory_mib);
        return -1;
    }
    if (s->kernel == NULL && s->disk == NULL) {
        log_warnx("instance %s: needs a kernel or a disk", id);
        return -1;
    }
    /* A disk with a kernel boots that kernel directly, root on the disk. */
    if (s->kernel == NULL && (s->initrd != NULL || s->cmdline != NULL)) {
        log_warnx("instance %s: initrd and cmdline apply only with a kernel",
                  id);
        return -1;
    }
    if ((s->cluster == NULL) != (s->owner == NULL) ||
        (s->cluster != NULL && (domxml_owner_valid(s->cluster) < 0 ||
                                domxml_owner_valid(s->owner) < 0))) {
        log_warnx("instance %s: the owner needs both a cluster id and an agent identity of 1 to %d characters of [A-Za-z0-9_.:-]",
                  id, DOMXML_OWNER_MAX);
        return -1;
    }
    if (s->arch != NULL && !domxml_id_ok(s->arch)) {
        log_warnx("instance %s: arch %.*s is not a plain word", id,
                  DOMXML_ID_MAX, s->arch);
        return -1;
    }
    if (s->network != NULL && !domxml_id_ok(s->network)) {
        log_warnx("instance %s: network %.*s is not 1 to %d characters of [A-Za-z0-9_-]",
                  id, DOMXML_ID_MAX, s->network, DOMXML_ID_MAX);
        return -1;
    }
    if (domxml_path_ok(id, "kernel", s->kernel) < 0 ||
        domxml_path_ok(id, "initrd", s->initrd) < 0 ||
        domxml_path_ok(id, "disk", s->disk) < 0 ||
        domxml_path_ok(id, "console log", s->console_log) < 0 ||
        domxml_path_ok(id, "channel socket", s->channel_path) < 0 ||
        domxml_path_ok(id, "boot config", s->boot_config_file) < 0 ||
        domxml_text_ok(id, "cmdline", s->cmdline) < 0)
        return -1;
    /* libvirt may escape this path the way it escapes inline fw_cfg values,
     * and a comma would split QEMU's option: refuse rather than guess. */
    if (s->boot_config_file != NULL &&
        strpbrk(s->boot_config_file, "&<>\"',") != NULL) {
        log_warnx(
            "instance %s: boot config path %s has a character libvirt or QEMU would mangle",
            id, s->boot_config_file);
        return -1;
    }
    return 0;
}

static xmlNodePtr
domxml_text(xmlNodePtr parent, const char *name, const char *content)
{
    return xmlNewTextChild(parent, NULL, (const xmlChar *)name,
                           (const xmlChar *)content);
}

static xmlNodePtr
domxml_elem(xmlNodePtr parent, const char *name)
{
    return xmlNewChild(parent, NULL, (const xmlChar *)name, NULL);
}

static void
domxml_prop(xmlNodePtr node, const char *name, const char *value)
{
    xmlNewProp(node, (const xmlChar *)name, (const xmlChar *)value);
}

static void
domxml_add_metadata(xmlNodePtr dom, const struct domxml_spec *s)
{
    xmlNodePtr md, inst;
    xmlNsPtr ns;
    char gen[32];

    md = domxml_elem(dom, "metadata");
    inst = xmlNewChild(md, NULL, (const xmlChar *)"instance", NULL);
    ns = xmlNewNs(inst, (const xmlChar *)DOMXML_METADATA_NS,
                  (const xmlChar *)DOMXML_METADATA_PREFIX);
    xmlSetNs(inst, ns);
    xmlNewTextChild(inst, ns, (const xmlChar *)"id",
                    (const xmlChar *)s->instance_id);
    snprintf(gen, sizeof(gen), "%" PRIu64, s->generation);
    xmlNewTextChild(inst, ns, (const xmlChar *)"generation",
                    (const xmlChar *)gen);
    if (s->cluster != NULL) {
        xmlNewTextChild(inst, ns, (const xmlChar *)"cluster",
                        (const xmlChar *)s->cluster);
        xmlNewTextChild(inst, ns, (const xmlChar *)"host",
                        (const xmlChar *)s->owner);
    }
}

static void
domxml_add_os(xmlNodePtr dom, const struct domxml_spec *s)
{
    xmlNodePtr os, type;

    os = domxml_elem(dom, "os");
    type = domxml_text(os, "type", "hvm");
    if (s->arch != NULL)
        domxml_prop(type, "arch", s->arch);
    if (s->kernel != NULL) {
        domxml_text(os, "kernel", s->kernel);
        if (s->initrd != NULL)
            domxml_text(os, "initrd", s->initrd);
        if (s->cmdline != NULL)
            domxml_text(os, "cmdline", s->cmdline);
    } else {
        domxml_prop(domxml_elem(os, "boot"), "dev", "hd");
    }
}

const char *
domxml_panic_model(const char *arch)
{
    if (arch == NULL) {
#if defined(__x86_64__) || defined(__i386__)
        arch = "x86_64";
#else
        return NULL;
#endif
    }
    /* x86: the ISA pvpanic device at port 0x505 (QEMU "pvpanic", the
     * guest's pvpanic-mmio driver finds it through ACPI QEMU0001). */
    if (strcmp(arch, "x86_64") == 0 || strcmp(arch, "i686") == 0)
        return "isa";
    /* Elsewhere QEMU has pvpanic-pci, which libvirt names only from 9.1
     * (model "pvpanic"); Debian 12's 9.0 refuses it: no device there. */
    return NULL;
}

static void
domxml_add_devices(xmlNodePtr dom, const struct domxml_spec *s)
{
    xmlNodePtr devs, n, src, tgt;
    const char *panic;

    devs = domxml_elem(dom, "devices");
    if (s->disk != NULL) {
        n = domxml_elem(devs, "disk");
        domxml_prop(n, "type", "file");
        domxml_prop(n, "device", "disk");
        tgt = domxml_elem(n, "driver");
        domxml_prop(tgt, "name", "qemu");
        domxml_prop(tgt, "type", "qcow2");
        domxml_prop(domxml_elem(n, "source"), "file", s->disk);
        tgt = domxml_elem(n, "target");
        domxml_prop(tgt, "dev", "vda");
        domxml_prop(tgt, "bus", "virtio");
    }

    /* The console is the instance's stdout: keep it in a file (libvirt
     * hands it to virtlogd, which caps its size), across restarts. */
    n = domxml_elem(devs, "serial");
    if (s->console_log != NULL) {
        domxml_prop(n, "type", "file");
        src = domxml_elem(n, "source");
        domxml_prop(src, "path", s->console_log);
        domxml_prop(src, "append", "on");
    } else {
        domxml_prop(n, "type", "pty");
    }
    domxml_prop(domxml_elem(n, "target"), "port", "0");

    if (s->network != NULL) {
        n = domxml_elem(devs, "interface");
        domxml_prop(n, "type", "network");
        domxml_prop(domxml_elem(n, "source"), "network", s->network);
        domxml_prop(domxml_elem(n, "model"), "type", "virtio");
    }
    if (s->channel_path != NULL) {
        n = domxml_elem(devs, "channel");
        domxml_prop(n, "type", "unix");
        src = domxml_elem(n, "source");
        domxml_prop(src, "mode", "bind");
        domxml_prop(src, "path", s->channel_path);
        tgt = domxml_elem(n, "target");
        domxml_prop(tgt, "type", "virtio");
        domxml_prop(tgt, "name", DOMXML_CHANNEL_NAME);
    }
    /* A guest kernel panic reaches libvirt (QEMU's pvpanic device; the
     * guest needs its driver), which then ends the domain as on_crash says
     * with reason "crashed": the agent's crash exit. */
    panic = domxml_panic_model(s->arch);
    if (panic != NULL)
        domxml_prop(domxml_elem(devs, "panic"), "model", panic);
    /* Instances get exactly the memory they asked for. */
    domxml_prop(domxml_elem(devs, "memballoon"), "model", "none");
}

char *
domxml_uuid(const char *instance_id)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char *in = xasprintf("cloud-instance/%s", instance_id);

    if (EVP_Digest(in, strlen(in), md, &mdlen, EVP_sha256(), NULL) != 1)
        fatalx("SHA-256 failed");
    free(in);
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x80); /* version 8: custom */
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    return xasprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                     "%02x%02x%02x%02x%02x%02x",
                     md[0], md[1], md[2], md[3], md[4], md[5], md[6], md[7],
                     md[8], md[9], md[10], md[11], md[12], md[13], md[14],
                     md[15]);
}

char *
domxml_build(const struct domxml_spec *s)
{
    xmlDocPtr doc = NULL;
    xmlBufferPtr buf = NULL;
    xmlNodePtr dom, n;
    char num[32], *name = NULL, *uuid = NULL, *out = NULL;

    if (domxml_spec_check(s) < 0)
        goto cleanup;

    doc = xmlNewDoc((const xmlChar *)"1.0");
    dom = xmlNewNode(NULL, (const xmlChar *)"domain");
    xmlDocSetRootElement(doc, dom);
    domxml_prop(dom, "type", hv_type_name(s->type));
    name = domxml_domain_name(s->instance_id);
    domxml_text(dom, "name", name);
    uuid = domxml_uuid(s->instance_id);
    domxml_text(dom, "uuid", uuid);
    domxml_add_metadata(dom, s);
    snprintf(num, sizeof(num), "%" PRIu64, s->memory_mib);
    domxml_prop(domxml_text(dom, "memory", num), "unit", "MiB");
    snprintf(num, sizeof(num), "%u", s->vcpus);
    domxml_text(dom, "vcpu", num);
    if (s->boot_config_file != NULL) {
        n = domxml_elem(dom, "sysinfo");
        domxml_prop(n, "type", "fwcfg");
        n = domxml_elem(n, "entry");
        domxml_prop(n, "name", DOMXML_FWCFG_NAME);
        domxml_prop(n, "file", s->boot_config_file);
    }
    domxml_add_os(dom, s);
    /* ACPI, so that a graceful stop (virDomainShutdown) reaches the guest. */
    domxml_elem(domxml_elem(dom, "features"), "acpi");
    /* A guest poweroff or crash ends the "process"; the agent reports the
     * exit and the controller's restart policy decides what happens next. */
    domxml_text(dom, "on_poweroff", "destroy");
    domxml_text(dom, "on_reboot", "restart");
    domxml_text(dom, "on_crash", "destroy");
    domxml_add_devices(dom, s);

    buf = xmlBufferCreate();
    if (buf == NULL)
        fatalx("cannot allocate an XML buffer");
    if (xmlNodeDump(buf, doc, dom, 0, 1) < 0) {
        log_warnx("instance %s: cannot serialise the domain XML",
                  s->instance_id);
        goto cleanup;
    }
    out = xasprintf("%s\n", (const char *)xmlBufferContent(buf));

cleanup:
    xmlBufferFree(buf);
    xmlFreeDoc(doc);
    free(name);
    free(uuid);
    return out;
}

/*
 * virDomainGetMetadata selects the element by namespace and hands it back
 * with the namespace stripped, so accept either no namespace or ours.
 */
static bool
domxml_md_is(xmlNodePtr n, const char *name)
{
    return n->type == XML_ELEMENT_NODE &&
           xmlStrEqual(n->name, (const xmlChar *)name) &&
           (n->ns == NULL ||
            xmlStrEqual(n->ns->href, (const xmlChar *)DOMXML_METADATA_NS));
}

/* The first element child of parent named name (see domxml_md_is). */
static xmlNodePtr
domxml_md_child(xmlNodePtr parent, const char *name)
{
    xmlNodePtr c;

    for (c = parent->children; c != NULL; c = c->next)
        if (domxml_md_is(c, name))
            return c;
    return NULL;
}

/*
 * The text of the children a and b of the root of instance metadata
 * ({DOMXML_METADATA_NS}instance), for the caller to xmlFree. Returns how
 * many of the two are there (with fewer than 2, neither is returned), or
 * -1 (logged) when xml is not instance metadata.
 */
static int
domxml_md_pair(const char *xml, const char *a, const char *b, xmlChar **va,
               xmlChar **vb)
{
    xmlDocPtr doc;
    xmlNodePtr root, an, bn;
    int n;

    *va = *vb = NULL;
    doc = xmlReadMemory(xml, (int)strlen(xml), "metadata.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR |
                            XML_PARSE_NOWARNING);
    if (doc == NULL || (root = xmlDocGetRootElement(doc)) == NULL) {
        log_warnx("instance metadata is not well-formed XML");
        xmlFreeDoc(doc);
        return -1;
    }
    if (!domxml_md_is(root, "instance")) {
        log_warnx("instance metadata root is not {%s}instance",
                  DOMXML_METADATA_NS);
        xmlFreeDoc(doc);
        return -1;
    }
    an = domxml_md_child(root, a);
    bn = domxml_md_child(root, b);
    n = (an != NULL) + (bn != NULL);
    if (n == 2) {
        *va = xmlNodeGetContent(an);
        *vb = xmlNodeGetContent(bn);
    }
    xmlFreeDoc(doc);
    return n;
}

int
domxml_metadata_parse(const char *xml, char **idp, uint64_t *genp)
{
    xmlChar *id, *gen;
    unsigned long long g;
    char *end;
    int n, ret = -1;

    n = domxml_md_pair(xml, "id", "generation", &id, &gen);
    if (n != 2) {
        if (n >= 0)
            log_warnx("instance metadata lacks an id or a generation");
        goto cleanup;
    }
    if (id == NULL || gen == NULL || domxml_id_valid((const char *)id) < 0)
        goto cleanup;
    errno = 0;
    g = strtoull((const char *)gen, &end, 10);
    if (errno != 0 || end == (char *)gen || *end != '\0' || gen[0] == '-') {
        log_warnx("instance %s: metadata generation %.32s is not a number",
                  (const char *)id, (const char *)gen);
        goto cleanup;
    }
    *idp = xstrdup((const char *)id);
    *genp = g;
    ret = 0;

cleanup:
    xmlFree(id);
    xmlFree(gen);
    return ret;
}

int
domxml_metadata_owner(const char *xml, char **clusterp, char **ownerp)
{
    xmlChar *cluster, *owner;
    int n, ret = -1;

    *clusterp = *ownerp = NULL;
    n = domxml_md_pair(xml, "cluster", "host", &cluster, &owner);
    if (n == 0)
        return 0; /* made before ownership: no owner */
    if (n == 1)
        log_warnx("instance metadata has only one of a cluster and a host");
    if (n != 2)
        return -1;
    if (cluster == NULL || owner == NULL ||
        domxml_owner_valid((const char *)cluster) < 0 ||
        domxml_owner_valid((const char *)owner) < 0) {
        log_warnx("instance metadata has an unusable cluster or host");
        goto cleanup;
    }
    *clusterp = xstrdup((const char *)cluster);
    *ownerp = xstrdup((const char *)owner);
    ret = 0;

cleanup:
    xmlFree(cluster);
    xmlFree(owner);
    return ret;
}

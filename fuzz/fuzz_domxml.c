/*
 * fuzz_domxml: domain XML (agent/domxml.c) from instance fields a user or
 * the controller controls: id, arch, kernel/initrd/disk paths, cmdline,
 * console and channel paths, the boot config file, vcpus, memory and the
 * generation.
 *
 * When domxml_build accepts a spec, the output must
 *  - contain no markup metacharacter that libxml2 did not write: every '&'
 *    starts an entity or character reference, no '<' or '>' inside text or
 *    attribute values;
 *  - parse back with libxml2 (strict, no network, no entities substituted);
 *  - have exactly the structure of the same spec with tame placeholder
 *    values (so no value added an element, an attribute or a comment), and
 *    give back each value where its placeholder was;
 *  - carry metadata that domxml_metadata_parse reads back as the same id
 *    and generation.
 *
 * Input: 22 bytes of header (flags, type, vcpus, memory, generation), then
 * NUL-separated strings. With the top bit of the type byte set, the strings
 * region also goes to domxml_metadata_parse as metadata read from libvirt.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "domxml.h"
#include "mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HDR_LEN 22

enum fuzz_field {
    F_ID,
    F_ARCH,
    F_KERNEL,
    F_INITRD,
    F_CMDLINE,
    F_DISK,
    F_CONSOLE,
    F_CHANNEL,
    F_BOOTCFG,
    F_COUNT,
};

/* Placeholders that pass every check and appear nowhere else in the XML. */
static const char *const tame[F_COUNT] = {
    [F_ID] = NULL, /* the id is kept: it also names and keys the domain */
    /* the arch is kept: it decides the shape (x86 has a panic device) */
    [F_ARCH] = NULL,
    [F_KERNEL] = "/fuzz/kernel",
    [F_INITRD] = "/fuzz/initrd",
    [F_CMDLINE] = "fuzz cmdline",
    [F_DISK] = "/fuzz/disk",
    [F_CONSOLE] = "/fuzz/console",
    [F_CHANNEL] = "/fuzz/channel",
    [F_BOOTCFG] = "/fuzz/bootcfg",
};

static uint64_t
get_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    while (n-- > 0)
        v = v << 8 | p[n];
    return v;
}

/* 1 if p starts an entity or character reference libxml2 writes. */
static bool
is_reference(const char *p)
{
    static const char *const named[] = {"&lt;", "&gt;", "&amp;", "&quot;",
                                        "&apos;"};
    size_t i;

    for (i = 0; i < sizeof(named) / sizeof(named[0]); i++)
        if (strncmp(p, named[i], strlen(named[i])) == 0)
            return true;
    if (p[1] != '#')
        return false;
    p += 2;
    if (*p == 'x') {
        p++;
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
              (*p >= 'A' && *p <= 'F')))
            return false;
        while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
               (*p >= 'A' && *p <= 'F'))
            p++;
    } else {
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == ';';
}

/*
 * A lexical pass over the serialised document: tags are '<' name ... '>',
 * attribute values are double-quoted; in text and in values, '<' and '>'
 * never appear raw and '&' always starts a reference.
 */
static void
check_escaping(const char *xml)
{
    const char *p = xml;

    while (*p) {
        if (*p == '<') {
            p++;
            if (*p == '/')
                p++;
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
                abort(); /* no comments, PIs, CDATA or DOCTYPE */
            while (*p && *p != '>') {
                if (*p == '<' || *p == '&' || *p == '\'')
                    abort();
                if (*p == '"') {
                    for (p++; *p && *p != '"'; p++) {
                        if (*p == '<' || *p == '>')
                            abort();
                        if (*p == '&' && !is_reference(p))
                            abort();
                    }
                    if (*p != '"')
                        abort();
                }
                p++;
            }
            if (*p != '>')
                abort();
            p++;
            continue;
        }
        if (*p == '>')
            abort();
        if (*p == '&' && !is_reference(p))
            abort();
        p++;
    }
}

static xmlDocPtr
parse_strict(const char *xml)
{
    /* No XML_PARSE_NOENT: a reference must stay text, never expand. */
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR |
                                      XML_PARSE_NOWARNING);

    if (doc == NULL || doc->intSubset != NULL || doc->extSubset != NULL ||
        xmlDocGetRootElement(doc) == NULL)
        abort();
    return doc;
}

/* The real value where the tame tree has placeholder v, else v itself. */
static const char *
expected_value(const char *v, const char *const real[F_COUNT])
{
    for (int f = 0; f < F_COUNT; f++)
        if (tame[f] != NULL && real[f] != NULL && strcmp(v, tame[f]) == 0)
            return real[f];
    return v;
}

static void
check_value(const xmlChar *got, const xmlChar *tamev,
            const char *const real[F_COUNT])
{
    if (got == NULL || tamev == NULL)
        abort();
    if (strcmp((const char *)got, expected_value((const char *)tamev, real)) !=
        0)
        abort();
}

/* The next sibling from n on that is not text; aborts on anything but
 * elements and text (comments, PIs, CDATA, entity references). */
static xmlNodePtr
skip_text(xmlNodePtr n)
{
    for (; n != NULL; n = n->next) {
        if (n->type == XML_ELEMENT_NODE)
            return n;
        if (n->type != XML_TEXT_NODE)
            abort();
    }
    return NULL;
}

/*
 * Walks both trees in step: same element names, namespaces and attributes
 * in the same order; leaf elements and attributes carry the expected text.
 * (Text is compared per leaf, not per node: an empty cmdline has no text
 * node where its placeholder has one.)
 */
static void
check_same_shape(xmlNodePtr a, xmlNodePtr t, const char *const real[F_COUNT])
{
    for (a = skip_text(a), t = skip_text(t); a != NULL || t != NULL;
         a = skip_text(a->next), t = skip_text(t->next)) {
        xmlAttrPtr aa, ta;
        xmlNodePtr ac, tc;

        if (a == NULL || t == NULL || !xmlStrEqual(a->name, t->name))
            abort();
        if ((a->ns == NULL) != (t->ns == NULL) ||
            (a->ns != NULL && !xmlStrEqual(a->ns->href, t->ns->href)))
            abort();
        for (aa = a->properties, ta = t->properties;
             aa != NULL || ta != NULL; aa = aa->next, ta = ta->next) {
            xmlChar *av, *tv;

            if (aa == NULL || ta == NULL || !xmlStrEqual(aa->name, ta->name))
                abort();
            av = xmlNodeListGetString(a->doc, aa->children, 1);
            tv = xmlNodeListGetString(t->doc, ta->children, 1);
            check_value(av ? av : (const xmlChar *)"", tv, real);
            xmlFree(av);
            xmlFree(tv);
        }
        ac = skip_text(a->children);
        tc = skip_text(t->children);
        if (ac == NULL && tc == NULL) {
            xmlChar *av = xmlNodeGetContent(a), *tv = xmlNodeGetContent(t);

            check_value(av, tv, real);
            xmlFree(av);
            xmlFree(tv);
            continue;
        }
        check_same_shape(a->children, t->children, real);
    }
}

/* The <metadata> child's element, serialised, read back by the agent. */
static void
check_metadata(xmlDocPtr doc, const struct domxml_spec *s)
{
    xmlNodePtr n, md = NULL;
    xmlBufferPtr buf;
    char *id = NULL;
    uint64_t gen = 0;

    for (n = xmlDocGetRootElement(doc)->children; n != NULL; n = n->next)
        if (n->type == XML_ELEMENT_NODE &&
            xmlStrEqual(n->name, (const xmlChar *)"metadata"))
            md = n;
    if (md == NULL)
        abort();
    for (n = md->children; n != NULL && n->type != XML_ELEMENT_NODE;
         n = n->next)
        ;
    if (n == NULL)
        abort();
    buf = xmlBufferCreate();
    if (buf == NULL || xmlNodeDump(buf, doc, n, 0, 0) < 0)
        abort();
    if (domxml_metadata_parse((const char *)xmlBufferContent(buf), &id,
                              &gen) < 0 ||
        strcmp(id, s->instance_id) != 0 || gen != s->generation)
        abort();
    free(id);
    xmlBufferFree(buf);
}

static void
fill_spec(struct domxml_spec *s, const uint8_t *hdr,
          const char *const str[F_COUNT])
{
    uint8_t flags = hdr[0];
    static const enum hv_type types[] = {HV_TYPE_NONE, HV_TYPE_QEMU,
                                         HV_TYPE_KVM, HV_TYPE_TEST};

    memset(s, 0, sizeof(*s));
    s->instance_id = str[F_ID];
    s->type = types[(hdr[1] & 0x7f) % 4];
    s->vcpus = (unsigned)get_le(hdr + 2, 4);
    s->memory_mib = get_le(hdr + 6, 8);
    s->generation = get_le(hdr + 14, 8);
    s->arch = flags & 0x01 ? str[F_ARCH] : NULL;
    if (flags & 0x02) {
        s->kernel = str[F_KERNEL];
        s->initrd = flags & 0x04 ? str[F_INITRD] : NULL;
        s->cmdline = flags & 0x08 ? str[F_CMDLINE] : NULL;
    } else {
        s->disk = str[F_DISK];
    }
    s->console_log = flags & 0x10 ? str[F_CONSOLE] : NULL;
    s->channel_path = flags & 0x20 ? str[F_CHANNEL] : NULL;
    s->boot_config_file = flags & 0x40 ? str[F_BOOTCFG] : NULL;
    /* Bit 7: both a kernel and a disk, which must be refused. */
    if (flags & 0x80)
        s->disk = str[F_DISK];
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *str[F_COUNT], *tame_str[F_COUNT];
    struct domxml_spec spec, tspec;
    char *text, *p, *xml = NULL, *txml = NULL, *name, *uuid;
    size_t n, i;
    xmlDocPtr doc = NULL, tdoc = NULL;

    if (size < HDR_LEN)
        return 0;
    n = size - HDR_LEN;
    text = xmalloc(n + 1);
    memcpy(text, data + HDR_LEN, n);
    text[n] = '\0';

    if (data[1] & 0x80) {
        char *id = NULL;
        uint64_t gen;
        if (domxml_metadata_parse(text, &id, &gen) == 0 &&
            domxml_id_valid(id) < 0)
            abort();
        free(id);
    }

    /* Split on NUL; missing strings are empty. */
    for (i = 0, p = text; i < F_COUNT; i++) {
        str[i] = p;
        p += strlen(p);
        if (p < text + n)
            p++;
    }

    /* A real value equal to another field's placeholder would make the
     * tame twin ambiguous (check_value maps placeholders back to real
     * values): not a case of domxml's, skip it. */
    for (i = 0; i < F_COUNT; i++)
        for (int f = 0; f < F_COUNT; f++)
            if (tame[f] != NULL && strcmp(str[i], tame[f]) == 0)
                goto cleanup;

    fill_spec(&spec, data, str);
    xml = domxml_build(&spec);
    if (xml == NULL)
        goto cleanup;
    /* A kernel, a disk, or both (a disk image that names its kernel). */
    if ((spec.kernel == NULL && spec.disk == NULL) ||
        (spec.kernel == NULL && (spec.initrd != NULL || spec.cmdline != NULL)) ||
        domxml_id_valid(spec.instance_id) < 0)
        abort(); /* accepted a spec it documents as invalid */

    name = domxml_domain_name(spec.instance_id);
    uuid = domxml_uuid(spec.instance_id);
    if (strlen(uuid) != 36 || strstr(xml, name) == NULL ||
        strstr(xml, uuid) == NULL)
        abort();
    free(name);
    free(uuid);

    check_escaping(xml);
    doc = parse_strict(xml);
    if (!xmlStrEqual(xmlDocGetRootElement(doc)->name,
                     (const xmlChar *)"domain"))
        abort();

    for (i = 0; i < F_COUNT; i++)
        tame_str[i] = tame[i] != NULL ? tame[i] : str[i];
    fill_spec(&tspec, data, tame_str);
    txml = domxml_build(&tspec);
    if (txml == NULL)
        abort(); /* the tame twin of an accepted spec must pass too */
    tdoc = parse_strict(txml);
    {
        const char *real[F_COUNT];
        for (i = 0; i < F_COUNT; i++)
            real[i] = str[i];
        check_same_shape(xmlDocGetRootElement(doc),
                         xmlDocGetRootElement(tdoc), real);
    }
    check_metadata(doc, &spec);

cleanup:
    xmlFreeDoc(doc);
    xmlFreeDoc(tdoc);
    free(xml);
    free(txml);
    free(text);
    return 0;
}

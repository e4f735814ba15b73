/*
 * unit_xml: XML checks for unit tests (header only: each test program
 * includes it once): validity against one of libvirt's RELAX NG schemas
 * (a missing schema fails the test: libvirt-daemon installs them, and a
 * skip would hide a broken setup), and the string value of an XPath
 * expression as a parser reads the document.
 */
#ifndef CLOUD_UNIT_XML_H
#define CLOUD_UNIT_XML_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <libxml/parser.h>
#include <libxml/relaxng.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "mem.h"

/* Fails unless xml is valid against the RELAX NG schema at rng_path. */
static inline void
unit_rng_check(const char *xml, const char *rng_path)
{
    xmlRelaxNGParserCtxtPtr pctx = xmlRelaxNGNewParserCtxt(rng_path);
    xmlRelaxNGPtr schema = xmlRelaxNGParse(pctx);
    xmlRelaxNGValidCtxtPtr vctx;
    xmlDocPtr doc;

    if (schema == NULL)
        fail_msg("cannot read libvirt's schema %s (libvirt-daemon)", rng_path);
    vctx = xmlRelaxNGNewValidCtxt(schema);
    doc = xmlReadMemory(xml, (int)strlen(xml), "x.xml", NULL, XML_PARSE_NONET);
    assert_non_null(doc);
    assert_int_equal(xmlRelaxNGValidateDoc(vctx, doc), 0);
    xmlFreeDoc(doc);
    xmlRelaxNGFreeValidCtxt(vctx);
    xmlRelaxNGFree(schema);
    xmlRelaxNGFreeParserCtxt(pctx);
}

/* The string value of XPath expr over xml (xmalloc'd); prefix names the
 * namespace uri in expr (both NULL: none). */
static inline char *
unit_xpath_string(const char *xml, const char *expr, const char *prefix,
                  const char *uri)
{
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "x.xml", NULL, 0);
    xmlXPathContextPtr ctx;
    xmlXPathObjectPtr obj;
    char *out;

    assert_non_null(doc);
    ctx = xmlXPathNewContext(doc);
    if (prefix != NULL)
        xmlXPathRegisterNs(ctx, (const xmlChar *)prefix, (const xmlChar *)uri);
    obj = xmlXPathEvalExpression((const xmlChar *)expr, ctx);
    assert_non_null(obj);
    out = xstrdup((const char *)obj->stringval);
    xmlXPathFreeObject(obj);
    xmlXPathFreeContext(ctx);
    xmlFreeDoc(doc);
    return out;
}

#endif

/* Checks of what an Admin API request carries (argument, payload, size), shared by
 * dispenserd and the tools: both refuse the same input with the same Qubes exception and
 * words, and every message names the field and its rule or limit. Pure functions. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include "qerr.h"

#define FEATURE_NAME_MAX 255

/* Feature names: [A-Za-z0-9_.-], 1..FEATURE_NAME_MAX characters (QubesValueError). */
int check_feature_name(const char *name, struct qerr *err);
/* Qubes' services: a feature service.NAME becomes the qube's /run/qubes-service/NAME,
 * so NAME must be a file name of at most SERVICE_NAME_MAX bytes (app-dispvm.* names
 * excepted, as in Qubes: those are not files). 0 for any other feature. */
#define SERVICE_FEATURE_PREFIX "service."
#define SERVICE_NAME_MAX 48
int check_service_feature(const char *feature, struct qerr *err);
/* Feature values: printable ASCII (QubesValueError). */
int check_feature_value(const void *value, size_t len, struct qerr *err);
/* Tags: [A-Za-z0-9_-], not empty (QubesInvalidTagError, as Qubes' validate_tag). */
int check_tag(const char *tag, struct qerr *err);
/* An argument any method may take: printable ASCII without spaces (QubesValueError). */
int check_argument(const char *method, const char *arg, struct qerr *err);
/* The global clipboard's largest content (qvm-clipboard, docs/gui.md): Qubes' default
 * limit, and what one request carries with room for its header. */
#define CLIPBOARD_MAX_BYTES 64000
/* A whole request of len bytes against WIRE_MAX_REQUEST; what names its cause. */
int check_request_size(size_t len, const char *what, struct qerr *err);

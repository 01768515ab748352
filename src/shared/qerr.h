/* An error as the Admin API reports it: a Qubes exception name and a message. */
#pragma once
#include "macro.h"

#define EXC_QUBES "QubesException"
#define EXC_PROTOCOL "ProtocolError"
#define EXC_PERMISSION "PermissionDenied"
#define EXC_VALUE "QubesValueError"
#define EXC_VM_NOT_FOUND "QubesVMNotFoundError"
#define EXC_VM_EXISTS "QubesVMAlreadyExistsError"
#define EXC_VM_IN_USE "QubesVMInUseError"
#define EXC_VM_NOT_HALTED "QubesVMNotHaltedError"
#define EXC_VM_NOT_STARTED "QubesVMNotStartedError"
#define EXC_VM_NOT_RUNNING "QubesVMNotRunningError"
#define EXC_VM_NOT_PAUSED "QubesVMNotPausedError"
#define EXC_NO_SUCH_PROPERTY "QubesNoSuchPropertyError"
#define EXC_PROPERTY_ACCESS "QubesPropertyAccessError"
#define EXC_FEATURE_NOT_FOUND "QubesFeatureNotFoundError"
#define EXC_TAG_NOT_FOUND "QubesTagNotFoundError"
#define EXC_LABEL_NOT_FOUND "QubesLabelNotFoundError"
#define EXC_MEMORY "QubesMemoryError"
#define EXC_PROPERTY_VALUE "QubesPropertyValueError"
#define EXC_INVALID_TAG "QubesInvalidTagError"
#define EXC_NOT_IMPLEMENTED "QubesNotImplementedError"
#define EXC_DEVICE_NOT_ASSIGNED "DeviceNotAssigned"
#define EXC_DEVICE_ALREADY_ATTACHED "DeviceAlreadyAttached"
#define EXC_DEVICE_ALREADY_ASSIGNED "DeviceAlreadyAssigned"
#define EXC_UNRECOGNIZED_ASSIGNMENT_MODE "QubesUnrecognizedDeviceAssignmentMode"

struct qerr {
    const char *exc; /* NULL: no error recorded */
    char msg[512];
};

/* Record an error and return -1, so that `return qerr_set(...)` reads naturally. */
int qerr_set(struct qerr *e, const char *exc, const char *fmt, ...) _printf_(3, 4);

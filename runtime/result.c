#include "rt.h"

#include <string.h>

const char *rt_strerror(int code)
{
    switch (code) {
    case RT_OK:
        return "RT_OK (success)";
    case RT_ENOMEM:
        return "RT_ENOMEM (out of memory)";
    case RT_EINVAL:
        return "RT_EINVAL (invalid argument)";
    case RT_ENOPROC:
        return "RT_ENOPROC (no such live actor)";
    case RT_EFULL:
        return "RT_EFULL (mailbox full)";
    case RT_EEXIST:
        return "RT_EEXIST (name already registered)";
    case RT_ENOENT:
        return "RT_ENOENT (no such entry)";
    case RT_ETIMEDOUT:
        return "RT_ETIMEDOUT (deadline passed)";
    case RT_ELIMIT:
        return "RT_ELIMIT (actor table full: raise max_actors)";
    case RT_ESHUTDOWN:
        return "RT_ESHUTDOWN (system stopping)";
    case RT_EFAULT_INJECTED:
        return "RT_EFAULT_INJECTED (an armed fault point failed this)";
    case RT_ECRASH:
        return "RT_ECRASH (handler crashed)";
    case RT_EKILLED:
        return "RT_EKILLED (killed)";
    case RT_EINTENSITY:
        return "RT_EINTENSITY (supervisor restart intensity exceeded)";
    default:
        if (code < 0 && code > -4096)
            return strerror(-code);
        return "unknown result";
    }
}

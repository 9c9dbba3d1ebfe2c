/* rt_fault_arm_spec(): the text form of arming that settings and the
 * operator shell use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rt.h"

typedef struct found {
    const char *name;
    rt_fault_info_t fi;
    bool seen;
} found_t;

static void find(const rt_fault_info_t *fi, void *ctx)
{
    found_t *f = ctx;
    if (strcmp(fi->name, f->name) == 0) {
        f->fi = *fi;
        f->seen = true;
    }
}

static rt_fault_arm_t armed(const char *name)
{
    found_t f = {.name = name};
    rt_fault_foreach(find, &f);
    assert_true(f.seen);
    return f.fi.arm;
}

static void test_spec_arms_each_entry(void **state)
{
    (void)state;
    char err[128];
    int n = rt_fault_arm_spec(
        "spec.a=fail:p=0.25, spec.b=delay:delay=7:count=3;spec.c=crash", err,
        sizeof(err));
    assert_int_equal(n, 3);
    rt_fault_arm_t a = armed("spec.a");
    assert_int_equal(a.action, RT_FAULT_FAIL);
    assert_true(a.probability > 0.24 && a.probability < 0.26);
    rt_fault_arm_t b = armed("spec.b");
    assert_int_equal(b.action, RT_FAULT_DELAY);
    assert_int_equal(b.delay_ms, 7);
    assert_int_equal(b.count, 3);
    rt_fault_arm_t c = armed("spec.c");
    assert_int_equal(c.action, RT_FAULT_CRASH);
    /* no p and no count: every hit */
    assert_true(c.probability == 1.0);
    assert_int_equal(rt_fault(("spec.c")), RT_FAULT_CRASH);
    assert_int_equal(rt_fault_disarm("spec.c"), 0);
    assert_int_equal(rt_fault(("spec.c")), RT_FAULT_NONE);
    rt_fault_disarm("spec.a");
    rt_fault_disarm("spec.b");
}

static void test_spec_errors_name_the_entry(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(rt_fault_arm_spec("spec.d=explode", err, sizeof(err)),
                     RT_EINVAL);
    assert_non_null(strstr(err, "explode"));
    assert_int_equal(rt_fault_arm_spec("spec.e", err, sizeof(err)), RT_EINVAL);
    assert_non_null(strstr(err, "NAME=ACTION"));
    assert_int_equal(rt_fault_arm_spec("spec.f=drop:p=2", err, sizeof(err)),
                     RT_EINVAL);
    assert_int_equal(rt_fault_arm_spec("spec.g=drop:q=1", err, sizeof(err)),
                     RT_EINVAL);
    assert_non_null(strstr(err, "q=1"));
    assert_int_equal(rt_fault_arm_spec("", err, sizeof(err)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_arms_each_entry),
        cmocka_unit_test(test_spec_errors_name_the_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

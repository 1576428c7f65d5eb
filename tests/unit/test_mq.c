/* common/mq: broker lists ("host[:port],...": the brokers key and flag of
 * the gateway, the device and ota-gateway ctl/announce). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/mq.h"

static void test_brokers_ok(void **state)
{
	(void)state;
	char err[256], host[256];
	unsigned n = 0;
	int port = 0;
	assert_int_equal(mq_brokers_check("localhost", &n, err, sizeof(err)),
			 0);
	assert_int_equal(n, 1);
	const char *list =
	    "a.example:1883, b ,[::1]:9,[fe80::1],127.0.0.1:65535";
	assert_int_equal(mq_brokers_check(list, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 5);
	/* A port left out is the default one; spaces around items go. */
	assert_int_equal(mq_brokers_get(list, 8883, 0, host, sizeof(host),
					&port, err, sizeof(err)),
			 0);
	assert_string_equal(host, "a.example");
	assert_int_equal(port, 1883);
	assert_int_equal(mq_brokers_get(list, 8883, 1, host, sizeof(host),
					&port, err, sizeof(err)),
			 0);
	assert_string_equal(host, "b");
	assert_int_equal(port, 8883);
	assert_int_equal(mq_brokers_get(list, 8883, 2, host, sizeof(host),
					&port, err, sizeof(err)),
			 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 9);
	assert_int_equal(mq_brokers_get(list, 7, 3, host, sizeof(host), &port,
					err, sizeof(err)),
			 0);
	assert_string_equal(host, "fe80::1");
	assert_int_equal(port, 7);
	assert_int_equal(mq_brokers_get(list, 8883, 4, host, sizeof(host),
					&port, err, sizeof(err)),
			 0);
	assert_int_equal(port, 65535);
	/* Past the end: none. */
	assert_int_equal(mq_brokers_get(list, 8883, 5, host, sizeof(host),
					&port, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "no broker 6");
}

static void test_brokers_bad(void **state)
{
	(void)state;
	static const struct {
		const char *list, *err;
	} bad[] = {
	    {"", "brokers: item 1 '': host name: 1 to 253 characters"},
	    {"a,", "brokers: item 2 '': host name: 1 to 253 characters"},
	    {"a:0", "brokers: item 1 'a:0': port: a number 1 to 65535"},
	    {"a:65536", "brokers: item 1 'a:65536': port: a number 1 to "
			"65535"},
	    {"a:", "brokers: item 1 'a:': port: a number 1 to 65535"},
	    {"a:8x", "brokers: item 1 'a:8x': port: a number 1 to 65535"},
	    {"a:-1", "brokers: item 1 'a:-1': port: a number 1 to 65535"},
	    {"::1", "brokers: item 1 '::1': an IPv6 address goes in brackets "
		    "([::1]:8883)"},
	    {"[::1", "brokers: item 1 '[::1': no ']' after the IPv6 address"},
	    {"[::1]8883", "brokers: item 1 '[::1]8883': ':PORT' or nothing "
			  "after ']'"},
	    {"a b", "brokers: item 1 'a b': host name: no spaces, '/' or "
		    "control characters"},
	    {"a/b:1", "brokers: item 1 'a/b:1': host name: no spaces, '/' or "
		      "control characters"},
	    {"a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", "brokers: more than 16"},
	};
	char err[256];
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		err[0] = '\0';
		assert_int_equal(mq_brokers_check(bad[i].list, NULL, err,
						  sizeof(err)),
				 -1);
		assert_string_equal(err, bad[i].err);
	}
	char longhost[300];
	memset(longhost, 'h', 254);
	longhost[254] = '\0';
	assert_int_equal(mq_brokers_check(longhost, NULL, err, sizeof(err)),
			 -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_brokers_ok),
	    cmocka_unit_test(test_brokers_bad),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test.h -- a tiny test harness in the libuv style.
 *
 * TEST(name) registers one behaviour. Each test runs in its own forked
 * process with a timeout; the binary prints one line per test and ends with
 * "N passed, N failed". CHECK() failures print file:line and the message;
 * tests that use randomness print their seed with TEST_SEED() first.
 * Run one test: ./test_x "name substring".
 */
#ifndef SHOAL_TEST_H
#define SHOAL_TEST_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*test_fn)(void);
struct test_entry {
    const char *name;
    test_fn fn;
    unsigned timeout_s;
};

#define TEST_MAX 256
extern struct test_entry test_list_[TEST_MAX];
extern int test_count_;

#define TEST_T(fn_, desc, timeout)                                             \
    static void fn_(void);                                                     \
    __attribute__((constructor)) static void reg_##fn_(void)                   \
    {                                                                          \
        if (test_count_ < TEST_MAX)                                            \
            test_list_[test_count_++] = (struct test_entry){desc, fn_, timeout}; \
    }                                                                          \
    static void fn_(void)
#define TEST(fn_, desc) TEST_T(fn_, desc, 60)

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                           \
        }                                                                      \
    } while (0)
#define CHECKF(cond, ...)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            exit(1);                                                           \
        }                                                                      \
    } while (0)
#define CHECK_EQ(a, b) CHECKF((a) == (b), "%lld != %lld", (long long)(a), (long long)(b))

/* Prints the seed so that a failing run can be replayed (SHOAL_SEED=...). */
#define TEST_SEED(var, dflt)                                                   \
    do {                                                                       \
        const char *e_ = getenv("SHOAL_SEED");                                 \
        var = e_ ? strtoull(e_, NULL, 0) : (dflt);                             \
        fprintf(stderr, "seed=%llu (replay with SHOAL_SEED=%llu)\n",           \
                (unsigned long long)(var), (unsigned long long)(var));          \
    } while (0)

#define TEST_MAIN()                                                            \
    struct test_entry test_list_[TEST_MAX];                                    \
    int test_count_;                                                           \
    int main(int argc, char **argv)                                            \
    {                                                                          \
        int passed = 0, failed = 0;                                            \
        setvbuf(stdout, NULL, _IONBF, 0);                                      \
        for (int i = 0; i < test_count_; i++) {                                \
            struct test_entry *t = &test_list_[i];                             \
            if (argc > 1 && !strstr(t->name, argv[1]))                         \
                continue;                                                      \
            pid_t pid = fork();                                                \
            if (pid == 0) {                                                    \
                alarm(t->timeout_s);                                           \
                t->fn();                                                       \
                _exit(0);                                                      \
            }                                                                  \
            int st = 0;                                                        \
            waitpid(pid, &st, 0);                                              \
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {                       \
                passed++;                                                      \
                printf("ok     %s\n", t->name);                                \
            } else {                                                           \
                failed++;                                                      \
                if (WIFSIGNALED(st))                                           \
                    printf("FAILED %s (signal %d%s)\n", t->name, WTERMSIG(st), \
                           WTERMSIG(st) == SIGALRM ? ", timeout" : "");        \
                else                                                           \
                    printf("FAILED %s (exit %d)\n", t->name, WEXITSTATUS(st)); \
            }                                                                  \
        }                                                                      \
        printf("%d passed, %d failed\n", passed, failed);                      \
        return failed ? 1 : 0;                                                 \
    }

#endif

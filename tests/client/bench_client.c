/* bench_client.c -- picks per second of the client library (numbers, not
 * pass/fail). Starts an agent (argv[1], else SHOAL_BIN, else ../shoal next
 * to this binary), registers 10 instances of "web", then times picks from
 * the cache with each strategy on 1 thread and on 4 threads.
 * Usage: build/tests/bench_client [SHOAL_BIN] [PICKS_PER_THREAD]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shoal/client.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int free_port(void)
{
    int t = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    if (t < 0 || bind(t, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        getsockname(t, (struct sockaddr *)&sin, &sl) != 0)
        exit(2);
    close(t);
    return ntohs(sin.sin_port);
}

static int post(int port, const char *path, const char *json)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char req[2048], resp[4096];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                     json ? "POST" : "GET", path, json ? strlen(json) : 0, json ? json : "");
    int status = -1;
    if (write(fd, req, (size_t)n) == n && read(fd, resp, sizeof(resp) - 1) > 12)
        status = atoi(resp + 9);
    close(fd);
    return status;
}

struct job {
    struct shoal_client *c;
    int lb;
    long n;
};

static void *run(void *arg)
{
    struct job *j = arg;
    struct shoal_endpoint e;
    char key[16] = "10.0.0.1";
    for (long i = 0; i < j->n; i++) {
        if (j->lb == SHOAL_CLIENT_IP_HASH)
            snprintf(key, sizeof(key), "10.0.%ld.%ld", (i >> 8) & 255, i & 255);
        int rc = j->lb == SHOAL_CLIENT_LEAST_CONN ? shoal_client_acquire(j->c, "web", &e)
                                                 : shoal_client_pick(j->c, "web", j->lb, key, &e);
        if (rc != 0) {
            fprintf(stderr, "pick: %s\n", shoal_strerror(rc));
            exit(1);
        }
        if (j->lb == SHOAL_CLIENT_LEAST_CONN)
            (void)shoal_client_release(j->c, "web", e.id);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    char bin[PATH_MAX], self[PATH_MAX];
    long n = argc > 2 ? atol(argv[2]) : 2000000;
    if (argc > 1)
        snprintf(bin, sizeof(bin), "%s", argv[1]);
    else if (getenv("SHOAL_BIN"))
        snprintf(bin, sizeof(bin), "%s", getenv("SHOAL_BIN"));
    else {
        ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
        self[l > 0 ? l : 0] = 0;
        snprintf(bin, sizeof(bin), "%s/../shoal", dirname(self));
    }
    char dir[] = "/tmp/shoal-bench-client-XXXXXX", bind[32], http[32], data[64];
    if (!mkdtemp(dir))
        return 2;
    int hport = free_port();
    snprintf(bind, sizeof(bind), "127.0.0.1:%d", free_port());
    snprintf(http, sizeof(http), "127.0.0.1:%d", hport);
    snprintf(data, sizeof(data), "%s/data", dir);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(bin, "shoal", "agent", "--name", "n1", "--bind", bind, "--http", http,
              "--data-dir", data, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; post(hport, "/v1/info", NULL) != 200; i++) {
        if (i > 1000) {
            fprintf(stderr, "agent %s did not start\n", bin);
            return 2;
        }
        usleep(20000);
    }
    for (int i = 0; i < 10; i++) {
        char json[256];
        snprintf(json, sizeof(json),
                 "{\"id\":\"web-%d\",\"service\":\"web\",\"address\":\"10.0.0.%d\","
                 "\"port\":8080,\"meta\":{\"weight\":\"%d\"}}",
                 i, i + 1, i % 3 + 1);
        if (post(hport, "/v1/register", json) != 200)
            return 2;
    }
    struct shoal_client_options o = {.agent = http, .seed = 1};
    struct shoal_client *c = shoal_client_new(&o, NULL);
    if (!c || shoal_client_watch(c, "web", NULL, 0) != 0)
        return 2;
    static const char *names[] = {"round-robin", "random", "least-conn*", "ip-hash"};
    printf("picks per second from the cache (10 instances, weights 1-3, %ld picks per thread)\n",
           n);
    printf("%-12s %14s %14s\n", "strategy", "1 thread", "4 threads");
    for (int lb = 0; lb < 4; lb++) {
        double rate[2];
        for (int t = 0; t < 2; t++) {
            int nth = t ? 4 : 1;
            struct job jobs[4];
            pthread_t th[4];
            double t0 = now_s();
            for (int i = 0; i < nth; i++) {
                jobs[i] = (struct job){c, lb, n};
                pthread_create(&th[i], NULL, run, &jobs[i]);
            }
            for (int i = 0; i < nth; i++)
                pthread_join(th[i], NULL);
            rate[t] = (double)n * nth / (now_s() - t0);
        }
        printf("%-12s %14.0f %14.0f\n", names[lb], rate[0], rate[1]);
    }
    printf("* least-conn: one acquire plus one release per pick\n");
    shoal_client_free(c);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}

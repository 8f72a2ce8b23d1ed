/* The pod sandbox's process (what Kubernetes calls the pause container): it holds the pod's
 * namespaces open and does nothing else. No pause image can be pulled on these machines, so
 * e2e/cluster/cluster.sh builds this statically and packs it as a one-file image. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

/* As PID 1 of the sandbox it also reaps zombies of processes sharing its PID namespace. */
static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  signal(SIGINT, quit);
  signal(SIGTERM, quit);
  signal(SIGCHLD, reap);
  for (;;) pause();
}

// OpenMP threads that wait passively, so that CPU training survives a shared machine.
#pragma once

namespace vae {

// libgomp's default spins at every barrier for a while before sleeping. When another process holds
// one of a 2-core machine's cores, the spinning thread keeps its core while the thread it waits for
// waits for one, and training drops to a seventh of its quiet speed (bench_cpu_contention measures
// it); passive waiting keeps most of it. libgomp reads OMP_WAIT_POLICY once, as it is loaded,
// before main, so a process cannot change its own policy: when the variable is unset, this sets it
// to passive and executes the program again (argv unchanged), once. A value the user set wins; if
// the new execution fails, the run goes on with libgomp's default. Call it first thing in main.
void prefer_passive_omp_waits(char** argv);

}  // namespace vae

// Graceful stop on SIGTERM / SIGUSR1 (what SLURM and other schedulers send before preempting): the
// first signal asks the trainer to finish the current step, save a checkpoint and exit 0; a second
// one exits at once. Open MPI's mpirun forwards SIGUSR1 and SIGUSR2 to every rank; a SIGTERM sent to
// mpirun makes it terminate the job (see README "Checkpoints, resume, stopping").
#pragma once

namespace moe::trainer {

void InstallStopSignalHandlers();
// True once a stop signal has arrived on this process.
bool StopRequested();
// The signal that asked to stop (0 if none).
int StopSignal();

}  // namespace moe::trainer

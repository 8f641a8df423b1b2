"""NUTS in which no chain waits for another: chains are jobs run on a fixed set of lanes.

Vmapping BlackJAX's NUTS kernel over chains runs them in lockstep. A transition is two nested
while loops (tree doublings, leapfrog steps), and under vmap every lane keeps stepping until
the longest trajectory in the batch ends, so most lanes compute gradients nobody uses
(`lockstep_efficiency` in a fit's attrs; figures in scripts/bench/RESULTS.md), and vmapping
datasets together makes it far worse.

Here the loop runs over leapfrog steps instead. Every iteration advances each lane's own
trajectory by one step; a lane whose transition ends adapts, records its draw and starts its
next transition in the same iteration, and a lane whose chain has all its iterations takes
the next (dataset, chain) job from the queue. Lanes idle only when the queue is empty, so
datasets of very different cost can share lanes, and many lanes amortize the fixed cost of
each loop iteration (on CPU, each kernel launch costs about the same whatever its size).

The loop is written blackjax-style: module-level pure functions over named states (`_Lane`
per lane, `_Stepping` for the inner loop over leapfrog steps, `_Loop` for the outer loop over
transition ends) and a `_Run` of what never changes during a run.

A transition is BlackJAX's multinomial NUTS, built from BlackJAX's integrator, metric,
proposals (its proposal sampling restated: `_progressive_sampling`) and checkpoint
bookkeeping, with its key derivation: from the same state and key it reaches BlackJAX's result
(`tests/inference/test_lanes.py` checks this). The schedule is hand-written because no library
runs NUTS this way; the U-turn check over the checkpoints is one vectorized test instead of
BlackJAX's while loop, which would cost a loop per step.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.mcmc import integrators, metrics, proposal
from blackjax.mcmc.integrators import IntegratorState
from blackjax.mcmc.proposal import Proposal
from blackjax.mcmc.trajectory import hmc_energy
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from hjax.inference.nuts import adaptation, thinning
from hjax.inference.nuts.adaptation import AdaptationState, Phase, Schedule, StepInfo
from hjax.inference.nuts.progress import report_count
from hjax.inference.nuts.rows import where_rows

__all__ = ["Jobs", "LaneOutput", "run"]

DIVERGENCE_THRESHOLD = 1000.0  # BlackJAX's default: energy error that makes a divergence
TURN_WINDOW = 4  # checkpoint rows a leapfrog step's U-turn test reads (`_turning_at`)

# Ravelled logdensity of one flat position given one dataset's arrays.
FlatLogDensity = Callable[[Float[Array, " d"], dict[str, Array]], Float[Array, ""]]


class Jobs(NamedTuple):
    """Chains to run, one row each: which dataset, the chain's key, its start, its metric and
    first step size."""

    dataset: Int[Array, " J"]
    key: PRNGKeyArray
    position: Float[Array, "J d"]
    logdensity: Float[Array, " J"]
    grad: Float[Array, "J d"]
    inverse_mass_matrix: Array  # (J, d) or (J, d, d)
    step_size: Float[Array, " J"]


class LaneOutput(NamedTuple):
    """Per job: kept draws (flat, constrained) and their statistics, the gradients of the
    unkept warmup, adapted parameters; and the loop's iteration count (every lane computes
    one gradient per iteration)."""

    draws: Float[Array, "J S c"]
    stats: StepInfo  # each (J, S)
    warmup_grad_evals: Int[Array, " J"]
    step_size: Float[Array, " J"]
    inverse_mass_matrix: Array
    iterations: Int[Array, ""]


class _Point(NamedTuple):
    """A proposal's state: what the chain moves to (BlackJAX's keeps the momentum too)."""

    position: Float[Array, " d"]
    logdensity: Float[Array, ""]
    grad: Float[Array, " d"]


class _Tree(NamedTuple):
    """A transition in progress: the trajectory so far and the subtree being built on it.

    The subtree grows from `front`, the trajectory's end on its side; `back` is the other
    end. Each step then replaces `front` without selecting between left and right ends.
    """

    key: PRNGKeyArray              # the transition's integrator key
    energy: Float[Array, ""]       # H0, the energy at the transition's start
    front: IntegratorState
    back: IntegratorState
    momentum_sum: Float[Array, " d"]  # over the trajectory before the subtree
    proposal: Proposal             # of _Point
    n_states: Int[Array, ""]       # before the subtree
    depth: Int[Array, ""]          # completed doublings
    # The subtree being built: 2**depth steps towards `to_right`.
    to_right: Bool[Array, ""]
    trajectory_key: PRNGKeyArray
    proposal_key: PRNGKeyArray
    steps: Int[Array, ""]
    sub_momentum_sum: Float[Array, " d"]
    sub_proposal: Proposal
    checkpoint_momenta: Float[Array, "depth d"]
    checkpoint_sums: Float[Array, "depth d"]
    diverging: Bool[Array, ""]
    turning: Bool[Array, ""]
    nan_log_density: Bool[Array, ""]  # in any leapfrog step of the transition


class _Lane(NamedTuple):
    """One lane: its job (J when idle), the chain's state and adaptation, its transition."""

    job: Int[Array, ""]
    iteration: Int[Array, ""]
    chain_key: PRNGKeyArray
    position: Float[Array, " d"]
    logdensity: Float[Array, ""]
    grad: Float[Array, " d"]
    adaptation: AdaptationState
    step_size: Float[Array, ""]
    tree: _Tree


# The metric as BlackJAX's `gaussian_euclidean` computes it, with products and sums in place
# of its `jnp.dot`s: under vmap a dot becomes a batched matrix product, a library call on CPU.

def _velocity(inverse_mass_matrix, momentum):
    """M^-1 p for a diagonal or dense (symmetric) inverse mass matrix; `p` may be stacked."""
    if inverse_mass_matrix.ndim == 1:
        return inverse_mass_matrix * momentum
    return momentum @ inverse_mass_matrix


def _kinetic_energy(inverse_mass_matrix, momentum, position=None):
    del position
    return 0.5 * jnp.sum(momentum * _velocity(inverse_mass_matrix, momentum), axis=-1)


def _is_turning(inverse_mass_matrix, left, right, total):
    """BlackJAX's generalized U-turn test; `left` and `total` may carry a leading axis."""
    rho = total - (right + left) / 2
    return ((jnp.sum(_velocity(inverse_mass_matrix, left) * rho, axis=-1) <= 0)
            | (jnp.sum(_velocity(inverse_mass_matrix, right) * rho, axis=-1) <= 0))


def _begin_subtree(tree: _Tree) -> _Tree:
    # BlackJAX's expansion step: fold the doubling count into the transition key.
    direction_key, trajectory_key, proposal_key = jax.random.split(
        jax.random.fold_in(tree.key, tree.depth), 3)
    # Drawn once (see `_progressive_sampling`), not once per field that selects by them.
    to_right, trajectory_key, proposal_key = jax.lax.optimization_barrier(
        (jax.random.bernoulli(direction_key), trajectory_key, proposal_key))
    turn = to_right != tree.to_right
    front = jax.tree.map(partial(jnp.where, turn), tree.back, tree.front)
    back = jax.tree.map(partial(jnp.where, turn), tree.front, tree.back)
    return tree._replace(front=front, back=back, to_right=to_right,
                         trajectory_key=trajectory_key, proposal_key=proposal_key,
                         steps=jnp.zeros_like(tree.steps), diverging=jnp.zeros((), bool),
                         turning=jnp.zeros((), bool))


def _begin_transition(lane: _Lane, warmup: Int[Array, ""]) -> _Lane:
    """Draw the momentum and set up a one-point trajectory (BlackJAX's kernel start)."""
    key_momentum, key_integrator = jax.random.split(
        jax.random.fold_in(lane.chain_key, lane.iteration))
    adapt = lane.adaptation
    step_size = adaptation.step_size_now(adapt, lane.iteration < warmup)
    imm = adapt.inverse_mass_matrix
    # Drawn once (see `_progressive_sampling`): fused into each of its uses, the normal draw
    # was computed again in each (its cost: scripts/bench/RESULTS.md).
    momentum = jax.lax.optimization_barrier(
        metrics.default_metric(imm).sample_momentum(key_momentum, lane.position))
    state = IntegratorState(lane.position, momentum, lane.logdensity, lane.grad)
    energy = -lane.logdensity + _kinetic_energy(imm, momentum)
    point = _Point(lane.position, lane.logdensity, lane.grad)
    tree = lane.tree._replace(
        key=key_integrator, energy=energy, front=state, back=state, momentum_sum=momentum,
        proposal=Proposal(point, energy, jnp.zeros_like(energy), jnp.full_like(energy, -jnp.inf)),
        n_states=jnp.zeros_like(lane.tree.n_states), depth=jnp.zeros_like(lane.tree.depth),
        nan_log_density=jnp.zeros((), bool))
    return lane._replace(step_size=step_size, tree=_begin_subtree(tree))


def _checkpoint_range(step):
    """NumPyro's checkpoints to test after leaf `step` of a subtree (BlackJAX's
    `_leaf_idx_to_ckpt_idxs`)."""
    idx_max = jax.lax.population_count(step >> 1)
    idx_min = idx_max - jax.lax.population_count((~step & (step + 1)) - 1) + 1
    return idx_min, idx_max


def _turning_at(imm, tree: _Tree, step, window: int | None = None) -> Bool[Array, ""]:
    """The U-turn test after leaf `step` of the subtree (its checkpoints written), over the
    `window` checkpoint rows that end at the last one to test (all rows: None).

    Leaf `step` tests as many rows as it has trailing one bits, more than 4 on one leaf in 32;
    the others read 4 rows, not all 10 (the saving: scripts/bench/RESULTS.md).
    """
    idx_min, idx_max = _checkpoint_range(step)
    momenta, sums = tree.checkpoint_momenta, tree.checkpoint_sums
    start = 0
    if window is not None and window < momenta.shape[0]:
        start = jnp.clip(idx_max - window + 1, 0, momenta.shape[0] - window)
        momenta = jax.lax.dynamic_slice_in_dim(momenta, start, window)
        sums = jax.lax.dynamic_slice_in_dim(sums, start, window)
    index = start + jnp.arange(momenta.shape[0])
    right = tree.front.momentum
    return jnp.any(_is_turning(imm, momenta, right, tree.sub_momentum_sum - sums + momenta)
                   & (index >= idx_min) & (index <= idx_max))


def _tests_beyond(step, window: int) -> Bool[Array, ""]:
    """Whether leaf `step` tests more checkpoint rows than `window`."""
    return jax.lax.population_count((~step & (step + 1)) - 1) > window


def _progressive_sampling(key: PRNGKeyArray, current: Proposal, new: Proposal,
                          biased: bool) -> Proposal:
    """BlackJAX's `progressive_uniform_sampling` (or `progressive_biased_sampling`), with the
    accept decision drawn once.

    Under vmap BlackJAX's `cond` becomes one `select` per proposal field, and XLA:CPU fused
    the decision's threefry draw into each of them: four draws per leapfrog step instead of
    one (their cost: scripts/bench/RESULTS.md). The barrier keeps the decision one value.

    The uniform case, once per leapfrog step, takes BlackJAX's `expit(r)` and
    `logaddexp(current, new)` from one `exp(-|r|)` (the saving: scripts/bench/RESULTS.md).
    Its `r` is NaN only where both weights are -inf, on a step that a divergence
    discards.
    """
    log_ratio = new.weight - current.weight
    if biased:
        p_accept = jnp.clip(jnp.exp(log_ratio), max=1)
        weight = jnp.logaddexp(current.weight, new.weight)
    else:
        shrink = jnp.exp(-jnp.abs(log_ratio))
        p_accept = jnp.where(log_ratio >= 0, 1, shrink) / (1 + shrink)
        weight = jnp.maximum(current.weight, new.weight) + jnp.log1p(shrink)
    accept = jax.lax.optimization_barrier(jax.random.bernoulli(key, p_accept))
    return Proposal(
        state=jax.tree.map(partial(jnp.where, accept), new.state, current.state),
        energy=jnp.where(accept, new.energy, current.energy), weight=weight,
        sum_log_p_accept=jnp.logaddexp(current.sum_log_p_accept, new.sum_log_p_accept))


def _advance(lane: _Lane, logdensity_fn: FlatLogDensity, data: dict[str, Array]) -> _Lane:
    """One leapfrog step of the subtree being built, and its bookkeeping (BlackJAX's
    `dynamic_progressive_integration` body, with NumPyro's iterative U-turn checkpoints)."""
    tree = lane.tree
    imm = lane.adaptation.inverse_mass_matrix
    kinetic = partial(_kinetic_energy, imm)
    integrator = integrators.velocity_verlet(partial(logdensity_fn, data=data), kinetic)
    state = integrator(tree.front, jnp.where(tree.to_right, lane.step_size, -lane.step_size))
    _, new_proposal = proposal.proposal_generator(hmc_energy(kinetic))
    candidate = new_proposal(tree.energy, state)
    candidate = candidate._replace(
        state=_Point(state.position, state.logdensity, state.logdensity_grad))
    first = tree.steps == 0
    sampled = _progressive_sampling(jax.random.fold_in(tree.trajectory_key, tree.steps),
                                    tree.sub_proposal, candidate, biased=False)
    sub_sum = jnp.where(first, state.momentum, tree.sub_momentum_sum + state.momentum)
    # Even leaves are checkpoints; odd ones test the subtrees that end with them. The leaf's
    # row is written in place (an odd leaf's row is out of range and dropped): a `where` over
    # every checkpoint made new arrays each step (their cost: scripts/bench/RESULTS.md).
    _, idx_max = _checkpoint_range(tree.steps)
    row = jnp.where(tree.steps % 2 == 0, idx_max, tree.checkpoint_momenta.shape[0])
    tree = tree._replace(
        front=state, sub_momentum_sum=sub_sum,
        checkpoint_momenta=tree.checkpoint_momenta.at[row].set(state.momentum, mode="drop"),
        checkpoint_sums=tree.checkpoint_sums.at[row].set(sub_sum, mode="drop"))
    # The leaf's U-turn test is taken by `_leapfrog`, on odd leaves only.
    tree = tree._replace(
        steps=tree.steps + 1, sub_proposal=jax.tree.map(partial(jnp.where, first), candidate,
                                                        sampled),
        diverging=-candidate.weight > DIVERGENCE_THRESHOLD, turning=jnp.zeros((), bool),
        nan_log_density=tree.nan_log_density | jnp.isnan(state.logdensity)
        | (state.logdensity == jnp.inf))
    return lane._replace(tree=tree)


def _turning_in_window(lane: _Lane) -> _Lane:
    """The lane with its last leaf's U-turn test taken over the `TURN_WINDOW` rows."""
    tree = lane.tree
    turning = _turning_at(lane.adaptation.inverse_mass_matrix, tree, tree.steps - 1,
                          TURN_WINDOW)
    return lane._replace(tree=tree._replace(turning=turning))


def _turning_on_all_rows(lane: _Lane, wide: Bool[Array, ""]) -> _Lane:
    """The lane with its last leaf's U-turn test taken over every checkpoint row if `wide`.

    A lane whose leaf the window covered keeps its test: taken again on other rows, the same
    sums may round differently, and a lane's draws would depend on the other lanes'.
    """
    tree = lane.tree
    turning = _turning_at(lane.adaptation.inverse_mass_matrix, tree, tree.steps - 1)
    return lane._replace(tree=tree._replace(turning=jnp.where(wide, turning, tree.turning)))


def _subtree_ended(lane: _Lane) -> Bool[Array, ""]:
    tree = lane.tree
    return (tree.steps == 2 ** tree.depth) | tree.diverging | tree.turning


def _merge(lane: _Lane, max_tree_depth: int) -> tuple[_Lane, Bool[Array, ""]]:
    """Add the finished subtree to the trajectory (BlackJAX's `expand_once` tail); returns the
    lane, its next subtree begun, and whether the transition is over."""
    tree = lane.tree
    rejected = tree.diverging | tree.turning
    biased = _progressive_sampling(tree.proposal_key, tree.proposal, tree.sub_proposal,
                                   biased=True)
    kept = tree.proposal._replace(sum_log_p_accept=jnp.logaddexp(
        tree.proposal.sum_log_p_accept, tree.sub_proposal.sum_log_p_accept))
    momentum_sum = tree.momentum_sum + tree.sub_momentum_sum
    left = jnp.where(tree.to_right, tree.back.momentum, tree.front.momentum)
    right = jnp.where(tree.to_right, tree.front.momentum, tree.back.momentum)
    turning = _is_turning(lane.adaptation.inverse_mass_matrix, left, right, momentum_sum)
    depth = tree.depth + 1
    tree = tree._replace(proposal=jax.tree.map(partial(jnp.where, rejected), kept, biased),
                         momentum_sum=momentum_sum, depth=depth,
                         n_states=tree.n_states + tree.steps)
    ended = rejected | turning | (depth >= max_tree_depth)
    # The diverging/turning flags survive into the statistics of an ended transition.
    tree = jax.tree.map(partial(jnp.where, ended), tree._replace(turning=tree.turning | turning),
                        _begin_subtree(tree))
    return lane._replace(tree=tree), ended


def _statistics(lane: _Lane) -> StepInfo:
    tree = lane.tree
    chosen = tree.proposal
    return StepInfo(
        lp=chosen.state.logdensity, diverging=tree.diverging, tree_depth=tree.depth,
        n_steps=tree.n_states, energy=chosen.energy,
        acceptance_rate=jnp.exp(chosen.sum_log_p_accept) / tree.n_states,
        step_size=lane.step_size, nan_log_density=tree.nan_log_density)



class _Run(NamedTuple):
    """What every function of the loop reads and none changes: the model's functions, the
    jobs and their datasets, and the settings."""

    logdensity_fn: FlatLogDensity
    constrain_fn: Callable[[Float[Array, " d"], dict[str, Array]], Float[Array, " c"]]
    data: dict[str, Array]
    jobs: Jobs
    n_real: Int[Array, ""]         # jobs to run; those after them pad a chunk
    schedule: Schedule
    target_accept: Float[Array, ""]
    total: Int[Array, ""]          # iterations per chain: warmup + draws * thin
    saved_warmup: int              # the last warmup iterations kept in the output
    thin: Int[Array, ""]           # iterations per kept draw after warmup
    kept: int                      # slots per chain: saved warmup, then draws
    dense_mass: bool
    max_tree_depth: int
    report_every: Int[Array, ""] | None  # transitions per progress report; None: no reports

    @property
    def n_jobs(self) -> int:
        return self.jobs.logdensity.shape[0]


class _Outputs(NamedTuple):
    """Per job (plus a spare row J, and a spare column for draws and statistics, that absorb
    writes of lanes with nothing to keep)."""

    stats: StepInfo
    warmup_grad_evals: Int[Array, " J+1"]
    draws: Array
    step_size: Array
    inverse_mass_matrix: Array


class _Stepping(NamedTuple):
    """The inner loop: one leapfrog step on every lane until some transition ends."""

    lanes: _Lane
    lane_data: dict[str, Array]
    ended: Bool[Array, " L"]
    iterations: Int[Array, ""]


class _Loop(NamedTuple):
    """The outer loop: from one set of ending transitions to the next, until no job is left."""

    lanes: _Lane
    lane_data: dict[str, Array]
    queued: Int[Array, ""]         # jobs taken from the queue so far
    pending: Int[Array, ""]        # transitions not yet reported to the progress bar
    outputs: _Outputs
    iterations: Int[Array, ""]


def _load(run: _Run, lane: _Lane, job: Int[Array, ""]) -> tuple[_Lane, dict[str, Array]]:
    """Put job `job` on the lane and begin its first transition; a lane given no job (job >=
    the real jobs) idles on a placeholder."""
    jobs, n_jobs = run.jobs, run.n_jobs
    job = jnp.where(job < run.n_real, job, n_jobs)
    row = jnp.minimum(job, n_jobs - 1)
    start = adaptation.init(jobs.position.shape[1], dtype=jnp.result_type(jobs.logdensity),
                            dense_mass=run.dense_mass,
                            inverse_mass_matrix=jobs.inverse_mass_matrix[row],
                            step_size=jobs.step_size[row])
    lane = lane._replace(job=job, iteration=jnp.zeros_like(lane.iteration),
                         chain_key=jobs.key[row], position=jobs.position[row],
                         logdensity=jobs.logdensity[row], grad=jobs.grad[row], adaptation=start)
    dataset = jnp.maximum(jobs.dataset[row], 0)
    return (_begin_transition(lane, run.schedule.warmup),
            jax.tree.map(lambda x: x[dataset], run.data))


def _adapted(run: _Run, lane: _Lane, stats: StepInfo, phase: Phase) -> AdaptationState:
    """The warmup update of the lane's adaptation (unchanged after warmup)."""
    return jax.lax.cond(
        phase.adapting,
        lambda a: adaptation.adapt(a, phase, lane.tree.proposal.state.position,
                                   stats.acceptance_rate, run.target_accept, run.dense_mass),
        lambda a: a, lane.adaptation)


def _finish(lane: _Lane, adapted: AdaptationState) -> _Lane:
    """Move to the transition's proposal, take the adaptation, count the iteration."""
    chosen = lane.tree.proposal.state
    return lane._replace(position=chosen.position, logdensity=chosen.logdensity,
                         grad=chosen.grad, adaptation=adapted, iteration=lane.iteration + 1)


def _leapfrog(run: _Run, state: _Stepping) -> _Stepping:
    """One leapfrog step on every lane; subtrees that end are merged."""
    # Idle lanes step too (on a placeholder): masking them would cost more than it saves.
    lanes = jax.vmap(partial(_advance, logdensity_fn=run.logdensity_fn))(state.lanes,
                                                                         data=state.lane_data)
    # Even leaves test no subtree (`_checkpoint_range`): the U-turn test is skipped on the
    # steps where every lane's leaf is even, half of them on one lane (the saving:
    # scripts/bench/RESULTS.md).
    odd_leaf = lanes.tree.steps % 2 == 0  # the leaf just taken is `steps - 1`
    lanes = jax.lax.cond(jnp.any(odd_leaf), jax.vmap(_turning_in_window), lambda lanes: lanes,
                         lanes)
    wide = _tests_beyond(lanes.tree.steps - 1, TURN_WINDOW) & (lanes.job < run.n_jobs)
    lanes = jax.lax.cond(jnp.any(wide), jax.vmap(_turning_on_all_rows),
                         lambda lanes, wide: lanes, lanes, wide)
    subtree_ended = jax.vmap(_subtree_ended)(lanes) & (lanes.job < run.n_jobs)

    def merge(lanes):
        merged, ended = jax.vmap(partial(_merge, max_tree_depth=run.max_tree_depth))(lanes)
        return where_rows(subtree_ended, merged, lanes), ended & subtree_ended

    # A trajectory of n steps ends a subtree on about log2(n) of them: on the other steps
    # (no lane's subtree ended) the merge is skipped, not computed and discarded.
    lanes, ended = jax.lax.cond(jnp.any(subtree_ended), merge,
                                lambda lanes: (lanes, jnp.zeros_like(subtree_ended)), lanes)
    return _Stepping(lanes=lanes, lane_data=state.lane_data, ended=ended,
                     iterations=state.iterations + 1)


def _record(run: _Run, outputs: _Outputs, lane: _Lane, moved: _Lane, stats: StepInfo,
            data: dict[str, Array], ended, done) -> _Outputs:
    """Write the ended transitions' draws and statistics (folded into their slot's: see
    `thinning`), and the adapted parameters of the chains that are done."""
    column, index = thinning.slot(lane.iteration, run.schedule.warmup, run.saved_warmup,
                                  run.thin)
    column = jnp.where(column >= 0, column, run.kept)
    row = jnp.where(ended, lane.job, run.n_jobs)
    finished = jnp.where(done, lane.job, run.n_jobs)
    params = jax.vmap(adaptation.parameters)(moved.adaptation)
    warming = jnp.where(lane.iteration < run.schedule.warmup, stats.n_steps, 0)
    slot_stats = jax.tree.map(lambda b: b[row, column], outputs.stats)
    stats = thinning.fold(slot_stats, stats, index)
    return _Outputs(
        stats=jax.tree.map(lambda b, s: b.at[row, column].set(s), outputs.stats, stats),
        warmup_grad_evals=outputs.warmup_grad_evals.at[row].add(warming),
        draws=outputs.draws.at[row, column].set(jax.vmap(run.constrain_fn)(moved.position,
                                                                           data)),
        step_size=outputs.step_size.at[finished].set(params.step_size),
        inverse_mass_matrix=outputs.inverse_mass_matrix.at[finished].set(
            params.inverse_mass_matrix))


def _take_jobs(run: _Run, lanes: _Lane, lane_data, done, queued):
    """Lanes whose chain is done take the next jobs in queue order."""
    loaded, new_data = jax.vmap(partial(_load, run))(
        lanes, jnp.where(done, queued + jnp.cumsum(done) - 1, lanes.job))
    return where_rows(done, loaded, lanes), where_rows(done, new_data, lane_data)


def _report(run: _Run, pending: Int[Array, ""]) -> Int[Array, ""]:
    """Advance the progress bar once enough transitions are pending; returns those left."""
    if run.report_every is None:
        return pending
    return jax.lax.cond(pending >= run.report_every,
                        lambda n: (report_count(n), jnp.zeros_like(n))[1], lambda n: n, pending)


def _transitions_end(run: _Run, loop: _Loop) -> _Loop:
    """Step until some transitions end; finish those lanes, write their results, and give
    lanes whose chain is done their next job."""
    stepping = jax.lax.while_loop(
        lambda s: ~jnp.any(s.ended), partial(_leapfrog, run),
        _Stepping(lanes=loop.lanes, lane_data=loop.lane_data,
                  ended=jnp.zeros_like(loop.lanes.job, bool), iterations=loop.iterations))
    lanes, ended = stepping.lanes, stepping.ended
    stats = jax.vmap(_statistics)(lanes)
    phase = jax.vmap(lambda lane: adaptation.phase_at(run.schedule, lane.iteration))(lanes)
    # Under vmap a cond computes both branches: skip the update unless an ending lane adapts
    # (never during sampling).
    adapted = jax.lax.cond(jnp.any(ended & phase.adapting),
                           lambda: jax.vmap(partial(_adapted, run))(lanes, stats, phase),
                           lambda: lanes.adaptation)
    moved = jax.vmap(_finish)(lanes, adapted)
    done = ended & (moved.iteration == run.total)
    begun = jax.vmap(partial(_begin_transition, warmup=run.schedule.warmup))(moved)
    outputs = _record(run, loop.outputs, lanes, moved, stats, stepping.lane_data, ended, done)
    pending = _report(run, loop.pending + jnp.sum(ended, dtype=jnp.int32))
    lanes = where_rows(ended, begun, lanes)
    # Chains end once per `warmup + draws` transitions: skip the loading otherwise.
    lanes, lane_data = jax.lax.cond(
        jnp.any(done), lambda args: _take_jobs(run, *args, done, loop.queued), lambda x: x,
        (lanes, stepping.lane_data))
    return _Loop(lanes=lanes, lane_data=lane_data,
                 queued=loop.queued + jnp.sum(done, dtype=jnp.int32), pending=pending,
                 outputs=outputs, iterations=stepping.iterations)


def _placeholder(jobs: Jobs, max_tree_depth: int, dense_mass: bool) -> _Lane:
    """A lane's structure, from the first job's shapes."""
    position, logdensity = jobs.position[0], jobs.logdensity[0]
    state = IntegratorState(position, position, logdensity, position)
    prop = Proposal(_Point(position, logdensity, position), logdensity, logdensity, logdensity)
    count = jnp.zeros((), jnp.int32)
    flag = jnp.zeros((), bool)
    checkpoints = jnp.zeros((max_tree_depth, position.shape[0]), position.dtype)
    key = jobs.key[0]
    tree = _Tree(key=key, energy=logdensity, front=state, back=state, momentum_sum=position,
                 proposal=prop, n_states=count, depth=count, to_right=flag, trajectory_key=key,
                 proposal_key=key, steps=count, sub_momentum_sum=position, sub_proposal=prop,
                 checkpoint_momenta=checkpoints, checkpoint_sums=checkpoints, diverging=flag,
                 turning=flag, nan_log_density=flag)
    start = adaptation.init(position.shape[0], dtype=jnp.result_type(logdensity),
                            dense_mass=dense_mass, inverse_mass_matrix=jobs.inverse_mass_matrix[0])
    return _Lane(job=count, iteration=count, chain_key=key, position=position,
                 logdensity=logdensity, grad=position, adaptation=start, step_size=logdensity,
                 tree=tree)


def _start(run: _Run, lanes: int) -> _Loop:
    """Every lane loaded with the first jobs, and empty outputs."""
    jobs, n_jobs = run.jobs, run.n_jobs
    placeholder = _placeholder(jobs, run.max_tree_depth, run.dense_mass)
    lane, lane_data = jax.vmap(lambda job: _load(run, placeholder, job))(jnp.arange(lanes))
    one = jax.tree.map(lambda x: x[0], lane)
    value = jax.eval_shape(run.constrain_fn, one.position, jax.tree.map(lambda x: x[0],
                                                                        lane_data))
    outputs = _Outputs(
        stats=StepInfo.zeros((n_jobs + 1, run.kept + 1), jobs.logdensity.dtype),
        warmup_grad_evals=jnp.zeros((n_jobs + 1,), jnp.int32),
        draws=jnp.zeros((n_jobs + 1, run.kept + 1, *value.shape), value.dtype),
        step_size=jnp.zeros((n_jobs + 1,), jobs.logdensity.dtype),
        inverse_mass_matrix=jnp.zeros((n_jobs + 1, *jobs.inverse_mass_matrix.shape[1:]),
                                      jobs.inverse_mass_matrix.dtype))
    zero = jnp.zeros((), jnp.int32)
    return _Loop(lanes=lane, lane_data=lane_data,
                 queued=jnp.minimum(run.n_real, lanes).astype(jnp.int32), pending=zero,
                 outputs=outputs, iterations=zero)


def run(
    logdensity_fn: FlatLogDensity,
    constrain_fn: Callable[[Float[Array, " d"], dict[str, Array]], Float[Array, " c"]],
    data: dict[str, Array],
    jobs: Jobs,
    schedule: Schedule,
    *,
    lanes: int,
    draws: int,
    saved_warmup: int = 0,
    thin: int | Int[Array, ""] = 1,
    target_accept: float | Float[Array, ""] = 0.8,
    dense_mass: bool = False,
    max_tree_depth: int = 10,
    progress: bool = False,
) -> LaneOutput:
    """Run every job's chain (`schedule.warmup + draws * thin` NUTS iterations with Stan's
    adaptation) on `lanes` lanes that each advance one leapfrog step per loop iteration.

    A job's draws depend on its key and start alone, never on the lanes or on other jobs.

    Args:
        logdensity_fn: log density of a flat unconstrained position and one dataset.
        constrain_fn: the flat constrained values recorded as a draw.
        data: the datasets' arrays, each with a leading dataset axis.
        jobs: the chains; `jobs.dataset` indexes `data`. Jobs whose dataset is negative (the
            padding of a chunk) are skipped.
        schedule: the warmup windows (`adaptation.schedule(warmup)`), a runtime value.
        lanes: chains advanced together; lanes beyond the jobs idle. Their number, not the
            jobs', fixes the compiled arithmetic, so a job's draws are the same bits
            whatever else runs beside it.
        draws: draws kept per chain after warmup, every `thin`-th iteration (a runtime
            value; `hjax.inference.nuts.thinning`); `saved_warmup` (0, or the whole warmup)
            warmup iterations are kept before them.
        target_accept, dense_mass, max_tree_depth: as `hj.sample`.
        progress: advance the active progress bar (`hjax.inference.nuts.progress`) as
            iterations end, about 100 times in all.

    Example:
        >>> def logdensity_fn(x, data):  # Normal(data["m"], 1)
        ...     return -0.5 * jnp.sum((x - data["m"]) ** 2)
        >>> data = {"m": jnp.array([0.0, 3.0])}  # 2 datasets
        >>> dataset, start = jnp.array([0, 0, 1, 1]), jnp.zeros((4, 1))  # 2 chains each
        >>> lp, grad = jax.vmap(jax.value_and_grad(logdensity_fn))(start, {"m": data["m"][dataset]})
        >>> jobs = Jobs(dataset, jax.random.split(jax.random.key(0), 4), start, lp, grad,
        ...             inverse_mass_matrix=jnp.ones((4, 1)), step_size=jnp.ones(4))
        >>> out = run(logdensity_fn, lambda x, data: x, data, jobs, adaptation.schedule(200),
        ...           lanes=2, draws=200)
        >>> out.draws.shape  # (jobs, draws, constrained size)
        (4, 200, 1)
        >>> out.draws.mean(axis=(1, 2)).round()  # each chain found its dataset's mean
        Array([0., 0., 3., 3.], dtype=float32)
    """
    n_jobs = jobs.logdensity.shape[0]
    thin = jnp.asarray(thin, jnp.int32)
    total = schedule.warmup + draws * thin
    every = jnp.maximum(1, n_jobs * total // 100) if progress else None
    setup = _Run(logdensity_fn=logdensity_fn, constrain_fn=constrain_fn, data=data, jobs=jobs,
                 n_real=jnp.sum(jobs.dataset >= 0), schedule=schedule,
                 target_accept=jnp.asarray(target_accept), total=total,
                 saved_warmup=saved_warmup, thin=thin, kept=saved_warmup + draws,
                 dense_mass=dense_mass, max_tree_depth=max_tree_depth, report_every=every)
    loop = jax.lax.while_loop(lambda loop: jnp.any(loop.lanes.job < n_jobs),
                              partial(_transitions_end, setup), _start(setup, lanes))
    if progress:
        report_count(loop.pending)
    outputs, kept = loop.outputs, setup.kept
    return LaneOutput(draws=outputs.draws[:n_jobs, :kept],
                      stats=jax.tree.map(lambda x: x[:n_jobs, :kept], outputs.stats),
                      warmup_grad_evals=outputs.warmup_grad_evals[:n_jobs],
                      step_size=outputs.step_size[:n_jobs],
                      inverse_mass_matrix=outputs.inverse_mass_matrix[:n_jobs],
                      iterations=loop.iterations)

"""NUTS in which no chain waits for another: chains are jobs run on a fixed set of lanes.

Vmapping BlackJAX's NUTS kernel over chains runs them in lockstep. A transition is two nested
while loops (tree doublings, leapfrog steps), and under vmap every lane keeps stepping until
the longest trajectory in the batch ends: on a 20-group model 4 vmapped chains used 48 % of
the gradients they computed, and vmapping datasets together made it far worse.

Here the loop runs over leapfrog steps instead. Every iteration advances each lane's own
trajectory by one step; a lane whose transition ends adapts, records its draw and starts its
next transition in the same iteration, and a lane whose chain has all its iterations takes
the next (dataset, chain) job from the queue. Lanes idle only when the queue is empty, so
datasets of very different cost can share lanes, and many lanes amortize the fixed cost of
each loop iteration (on CPU, XLA pays about 0.15 us per kernel whatever its size).

A transition is BlackJAX's multinomial NUTS, built from BlackJAX's integrator, metric,
proposals and checkpoint bookkeeping, with its key derivation: from the same state and key
it reaches BlackJAX's result (`tests/inference/test_lanes.py` checks this). The schedule is
hand-written because no library runs NUTS this way; the U-turn check over the checkpoints is
one vectorized test instead of BlackJAX's while loop, which would cost a loop per step.
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

from hjax.inference import nuts
from hjax.inference.progress import report_count

__all__ = ["Jobs", "LaneOutput", "run"]

DIVERGENCE_THRESHOLD = 1000.0  # BlackJAX's default: energy error that makes a divergence

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
    """Per job: kept draws (flat, constrained), per-iteration statistics, adapted parameters;
    and the loop's iteration count (every lane computes one gradient per iteration)."""

    draws: Float[Array, "J S c"]
    stats: nuts.StepInfo  # each (J, T)
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


class _Lane(NamedTuple):
    """One lane: its job (J when idle), the chain's state and adaptation, its transition."""

    job: Int[Array, ""]
    iteration: Int[Array, ""]
    chain_key: PRNGKeyArray
    position: Float[Array, " d"]
    logdensity: Float[Array, ""]
    grad: Float[Array, " d"]
    adaptation: nuts.AdaptationState
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
    to_right = jax.random.bernoulli(direction_key)
    turn = to_right != tree.to_right
    front = jax.tree.map(partial(jnp.where, turn), tree.back, tree.front)
    back = jax.tree.map(partial(jnp.where, turn), tree.front, tree.back)
    return tree._replace(front=front, back=back, to_right=to_right,
                         trajectory_key=trajectory_key, proposal_key=proposal_key,
                         steps=jnp.zeros_like(tree.steps), diverging=jnp.zeros((), bool),
                         turning=jnp.zeros((), bool))


def _begin_transition(lane: _Lane, warmup: int) -> _Lane:
    """Draw the momentum and set up a one-point trajectory (BlackJAX's kernel start)."""
    key_momentum, key_integrator = jax.random.split(
        jax.random.fold_in(lane.chain_key, lane.iteration))
    adapt = lane.adaptation
    step_size = jnp.where(lane.iteration < warmup, adapt.step_size,
                          jnp.exp(adapt.step_size_state.log_step_size_avg))
    imm = adapt.inverse_mass_matrix
    momentum = metrics.default_metric(imm).sample_momentum(key_momentum, lane.position)
    state = IntegratorState(lane.position, momentum, lane.logdensity, lane.grad)
    energy = -lane.logdensity + _kinetic_energy(imm, momentum)
    point = _Point(lane.position, lane.logdensity, lane.grad)
    tree = lane.tree._replace(
        key=key_integrator, energy=energy, front=state, back=state, momentum_sum=momentum,
        proposal=Proposal(point, energy, jnp.zeros_like(energy), jnp.full_like(energy, -jnp.inf)),
        n_states=jnp.zeros_like(lane.tree.n_states), depth=jnp.zeros_like(lane.tree.depth))
    return lane._replace(step_size=step_size, tree=_begin_subtree(tree))


def _checkpoint_range(step):
    """NumPyro's checkpoints to test after leaf `step` of a subtree (BlackJAX's
    `_leaf_idx_to_ckpt_idxs`)."""
    idx_max = jax.lax.population_count(step >> 1)
    idx_min = idx_max - jax.lax.population_count((~step & (step + 1)) - 1) + 1
    return idx_min, idx_max


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
    sampled = proposal.progressive_uniform_sampling(
        jax.random.fold_in(tree.trajectory_key, tree.steps), tree.sub_proposal, candidate)
    sub_sum = jnp.where(first, state.momentum, tree.sub_momentum_sum + state.momentum)
    # Even leaves are checkpoints; odd ones test the subtrees that end with them.
    idx_min, idx_max = _checkpoint_range(tree.steps)
    index = jnp.arange(tree.checkpoint_momenta.shape[0])[:, None]
    write = (index == idx_max) & (tree.steps % 2 == 0)
    momenta = jnp.where(write, state.momentum, tree.checkpoint_momenta)
    sums = jnp.where(write, sub_sum, tree.checkpoint_sums)
    turning = jnp.any(_is_turning(imm, momenta, state.momentum, sub_sum - sums + momenta)
                      & (index[:, 0] >= idx_min) & (index[:, 0] <= idx_max))
    tree = tree._replace(
        front=state, steps=tree.steps + 1, sub_momentum_sum=sub_sum,
        sub_proposal=jax.tree.map(partial(jnp.where, first), candidate, sampled),
        checkpoint_momenta=momenta, checkpoint_sums=sums,
        diverging=-candidate.weight > DIVERGENCE_THRESHOLD, turning=turning)
    return lane._replace(tree=tree)


def _subtree_ended(lane: _Lane) -> Bool[Array, ""]:
    tree = lane.tree
    return (tree.steps == 2 ** tree.depth) | tree.diverging | tree.turning


def _merge(lane: _Lane, max_tree_depth: int) -> tuple[_Lane, Bool[Array, ""]]:
    """Add the finished subtree to the trajectory (BlackJAX's `expand_once` tail); returns the
    lane, its next subtree begun, and whether the transition is over."""
    tree = lane.tree
    rejected = tree.diverging | tree.turning
    biased = proposal.progressive_biased_sampling(tree.proposal_key, tree.proposal,
                                                  tree.sub_proposal)
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


def _statistics(lane: _Lane) -> nuts.StepInfo:
    tree = lane.tree
    chosen = tree.proposal
    return nuts.StepInfo(
        lp=chosen.state.logdensity, diverging=tree.diverging, tree_depth=tree.depth,
        n_steps=tree.n_states, energy=chosen.energy,
        acceptance_rate=jnp.exp(chosen.sum_log_p_accept) / tree.n_states,
        step_size=lane.step_size)


def _where(mask, new, old):
    """Per lane (leading axis) `new` where `mask`, else `old`."""
    return jax.tree.map(
        lambda n, o: jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o), new, old)


def run(
    logdensity_fn: FlatLogDensity,
    constrain_fn: Callable[[Float[Array, " d"], dict[str, Array]], Float[Array, " c"]],
    data: dict[str, Array],
    jobs: Jobs,
    *,
    lanes: int,
    warmup: int,
    draws: int,
    target_accept: float = 0.8,
    dense_mass: bool = False,
    max_tree_depth: int = 10,
    save_warmup: bool = False,
    progress: bool = False,
) -> LaneOutput:
    """Run every job's chain (`warmup + draws` NUTS iterations with Stan's adaptation) on
    `lanes` lanes that each advance one leapfrog step per loop iteration.

    A job's draws depend on its key and start alone, never on the lanes or on other jobs.

    Args:
        logdensity_fn: log density of a flat unconstrained position and one dataset.
        constrain_fn: the flat constrained values recorded as a draw.
        data: the datasets' arrays, each with a leading dataset axis.
        jobs: the chains; `jobs.dataset` indexes `data`. Jobs whose dataset is negative (the
            padding of a chunk) are skipped.
        lanes: chains advanced together; lanes beyond the jobs idle. Their number, not the
            jobs', fixes the compiled arithmetic, so a job's draws are the same bits
            whatever else runs beside it.
        warmup, draws: iterations per chain; `save_warmup` keeps the warmup draws too.
        target_accept, dense_mass, max_tree_depth: as `hj.sample`.
        progress: advance the active progress bar (`hjax.inference.progress`) as
            iterations end, about 100 times in all.

    Example:
        >>> out = run(logdensity_fn, constrain_fn, data, jobs, lanes=8, warmup=500, draws=500)
        >>> out.draws.shape  # (jobs, draws, constrained size)
    """
    n_jobs = jobs.logdensity.shape[0]
    n_real = jnp.sum(jobs.dataset >= 0)
    total = warmup + draws
    kept = total if save_warmup else draws
    phases = nuts.schedule(warmup, draws)
    every = max(1, n_jobs * total // 100)

    def load(lane: _Lane, job: Int[Array, ""]) -> tuple[_Lane, dict[str, Array]]:
        """Put job `job` on the lane; a lane given no job (job >= real jobs) idles."""
        job = jnp.where(job < n_real, job, n_jobs)
        row = jnp.minimum(job, n_jobs - 1)
        start = nuts.init(nuts.HMCState(jobs.position[row], jobs.logdensity[row],
                                        jobs.grad[row]),
                          dense_mass=dense_mass, inverse_mass_matrix=jobs.inverse_mass_matrix[row],
                          step_size=jobs.step_size[row])
        lane = lane._replace(job=job, iteration=jnp.zeros_like(lane.iteration),
                             chain_key=jobs.key[row], position=jobs.position[row],
                             logdensity=jobs.logdensity[row], grad=jobs.grad[row],
                             adaptation=start.adaptation)
        dataset = jnp.maximum(jobs.dataset[row], 0)
        return _begin_transition(lane, warmup), jax.tree.map(lambda x: x[dataset], data)

    def phase_of(lane: _Lane) -> nuts.Phase:
        """The warmup schedule's entry for the lane's current iteration."""
        return jax.tree.map(lambda x: x[jnp.minimum(lane.iteration, total - 1)], phases)

    def adapted(lane: _Lane, stats: nuts.StepInfo, phase: nuts.Phase) -> nuts.AdaptationState:
        """The warmup update of the lane's adaptation (unchanged after warmup)."""
        return jax.lax.cond(
            phase.adapting,
            lambda a: nuts.adapt(a, phase, lane.tree.proposal.state.position,
                                 stats.acceptance_rate, target_accept, dense_mass),
            lambda a: a, lane.adaptation)

    def finish(lane: _Lane, adaptation: nuts.AdaptationState) -> _Lane:
        """Move to the transition's proposal, take the adaptation, count the iteration."""
        chosen = lane.tree.proposal.state
        return lane._replace(position=chosen.position, logdensity=chosen.logdensity,
                             grad=chosen.grad, adaptation=adaptation,
                             iteration=lane.iteration + 1)

    lane, lane_data = jax.vmap(
        lambda job: load(_placeholder(jobs, max_tree_depth, dense_mass), job))(
            jnp.arange(lanes))
    one = jax.tree.map(lambda x: x[0], lane)
    stats_shape = jax.eval_shape(_statistics, one)
    value_shape = jax.eval_shape(constrain_fn, one.position,
                                 jax.tree.map(lambda x: x[0], lane_data))
    outputs = _Outputs(
        stats=jax.tree.map(lambda s: jnp.zeros((n_jobs + 1, total), s.dtype), stats_shape),
        draws=jnp.zeros((n_jobs + 1, kept + 1, *value_shape.shape), value_shape.dtype),
        step_size=jnp.zeros((n_jobs + 1,), jobs.logdensity.dtype),
        inverse_mass_matrix=jnp.zeros((n_jobs + 1, *jobs.inverse_mass_matrix.shape[1:]),
                                      jobs.inverse_mass_matrix.dtype))

    def step(carry):
        """One leapfrog step on every lane; subtrees that end are merged."""
        lane, lane_data, _, iterations = carry
        # Idle lanes step too (on a placeholder): masking them would cost more than it saves.
        lane = jax.vmap(partial(_advance, logdensity_fn=logdensity_fn))(lane, data=lane_data)
        subtree_ended = jax.vmap(_subtree_ended)(lane) & (lane.job < n_jobs)

        def merge(lane):
            merged, ended = jax.vmap(partial(_merge, max_tree_depth=max_tree_depth))(lane)
            return _where(subtree_ended, merged, lane), ended & subtree_ended

        # A trajectory of n steps ends a subtree on about log2(n) of them: on the other steps
        # (no lane's subtree ended) the merge is skipped, not computed and discarded.
        lane, ended = jax.lax.cond(jnp.any(subtree_ended), merge,
                                   lambda lane: (lane, jnp.zeros_like(subtree_ended)), lane)
        return lane, lane_data, ended, iterations + 1

    def transitions_end(carry):
        """Step until some transitions end; finish those lanes and write their results."""
        lane, lane_data, queued, pending, outputs, iterations = carry
        start = (lane, lane_data, jnp.zeros_like(lane.job, bool), iterations)
        lane, lane_data, ended, iterations = jax.lax.while_loop(lambda c: ~jnp.any(c[2]), step,
                                                                start)
        stats = jax.vmap(_statistics)(lane)
        # Under vmap a cond computes both branches: skip the update unless an ending lane adapts
        # (never during sampling).
        phase = jax.vmap(phase_of)(lane)
        adaptation = jax.lax.cond(jnp.any(ended & phase.adapting),
                                  lambda: jax.vmap(adapted)(lane, stats, phase),
                                  lambda: lane.adaptation)
        moved = jax.vmap(finish)(lane, adaptation)
        done = ended & (moved.iteration == total)
        begun = jax.vmap(partial(_begin_transition, warmup=warmup))(moved)
        kept_at = lane.iteration - (0 if save_warmup else warmup)
        row = jnp.where(ended, lane.job, n_jobs)
        finished = jnp.where(done, lane.job, n_jobs)
        params = jax.vmap(nuts.parameters)(moved)
        outputs = _Outputs(
            stats=jax.tree.map(lambda b, s: b.at[row, lane.iteration].set(s),
                               outputs.stats, stats),
            draws=outputs.draws.at[row, jnp.where(kept_at >= 0, kept_at, kept)].set(
                jax.vmap(constrain_fn)(moved.position, lane_data)),
            step_size=outputs.step_size.at[finished].set(params.step_size),
            inverse_mass_matrix=outputs.inverse_mass_matrix.at[finished].set(
                params.inverse_mass_matrix))
        pending = pending + jnp.sum(ended, dtype=jnp.int32)
        if progress:
            pending = jax.lax.cond(pending >= every,
                                   lambda n: (report_count(n), jnp.zeros_like(n))[1],
                                   lambda n: n, pending)
        lane = _where(ended, begun, lane)

        def take_jobs(lanes_and_data):
            """Lanes whose chain is done take the next jobs in queue order."""
            lane, lane_data = lanes_and_data
            loaded, new_data = jax.vmap(load)(lane, jnp.where(
                done, queued + jnp.cumsum(done) - 1, lane.job))
            return _where(done, loaded, lane), _where(done, new_data, lane_data)

        # Chains end once per `warmup + draws` transitions: skip the loading otherwise.
        lane, lane_data = jax.lax.cond(jnp.any(done), take_jobs, lambda x: x, (lane, lane_data))
        queued = queued + jnp.sum(done, dtype=jnp.int32)
        return lane, lane_data, queued, pending, outputs, iterations

    carry = (lane, lane_data, jnp.minimum(n_real, lanes).astype(jnp.int32),
             jnp.zeros((), jnp.int32), outputs, jnp.zeros((), jnp.int32))
    *_, pending, outputs, iterations = jax.lax.while_loop(
        lambda carry: jnp.any(carry[0].job < n_jobs), transitions_end, carry)
    if progress:
        report_count(pending)
    return LaneOutput(draws=outputs.draws[:n_jobs, :kept],
                      stats=jax.tree.map(lambda x: x[:n_jobs], outputs.stats),
                      step_size=outputs.step_size[:n_jobs],
                      inverse_mass_matrix=outputs.inverse_mass_matrix[:n_jobs],
                      iterations=iterations)


class _Outputs(NamedTuple):
    """Per job (plus a spare row J that absorbs writes of lanes with nothing to write)."""

    stats: nuts.StepInfo
    draws: Array
    step_size: Array
    inverse_mass_matrix: Array


def _placeholder(jobs: Jobs, max_tree_depth: int, dense_mass: bool) -> _Lane:
    """A lane's structure, from the first job's shapes."""
    position, logdensity = jobs.position[0], jobs.logdensity[0]
    state = IntegratorState(position, position, logdensity, position)
    prop = Proposal(_Point(position, logdensity, position), logdensity, logdensity, logdensity)
    count = jnp.zeros((), jnp.int32)
    flag = jnp.zeros((), bool)
    checkpoints = jnp.zeros((max_tree_depth, position.shape[0]), position.dtype)
    key = jobs.key[0]
    tree = _Tree(key, logdensity, state, state, position, prop, count, count, flag, key, key,
                 count, position, prop, checkpoints, checkpoints, flag, flag)
    start = nuts.init(nuts.HMCState(position, logdensity, position),
                      inverse_mass_matrix=jobs.inverse_mass_matrix[0], dense_mass=dense_mass)
    return _Lane(count, count, key, position, logdensity, position, start.adaptation,
                 logdensity, tree)

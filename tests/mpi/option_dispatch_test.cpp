// Option-mode dispatch under mpirun: the same routing gives bit-identical slots in option and
// token mode; the held plan is rebuilt exactly when a mask switches and renegotiated with the
// peers only when a bound to another rank grows; traffic counters add up; routing outside a held
// mask is an error on every rank, not a hang.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "parallel/mpi_communicator.hpp"
#include "parallel/token_dispatcher.hpp"
#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "tests/mpi/mpi_test_support.hpp"

namespace temoe {
namespace {

constexpr int64_t kWidth = 8;

// Tokens in runs of `run` that hold one mask of k_hat experts; each token routes to k experts of its mask.
struct HeldBatch {
  Tensor hidden;                 // [N, D]
  std::vector<int32_t> experts;  // N * k
  std::vector<uint8_t> flags;    // N * E
};

HeldBatch make_held_batch(int rank, int64_t tokens, int64_t num_experts, int64_t top_k, int64_t k_hat, int64_t run,
                          uint64_t routing_seed) {
  HeldBatch batch{Tensor({tokens, kWidth}), {}, std::vector<uint8_t>(static_cast<size_t>(tokens * num_experts), 0)};
  CounterRandom random(routing_seed, {static_cast<uint64_t>(rank)});
  for (int64_t i = 0; i < batch.hidden.numel(); ++i) batch.hidden.data()[i] = static_cast<float>(random.normal());
  std::vector<int32_t> mask;
  for (int64_t token = 0; token < tokens; ++token) {
    if (token % run == 0) {  // a new held mask, keyed by (rank, run) only: the routing seed leaves it alone
      CounterRandom mask_random(5, {static_cast<uint64_t>(rank), static_cast<uint64_t>(token / run)});
      std::vector<int32_t> all(static_cast<size_t>(num_experts));
      std::iota(all.begin(), all.end(), 0);
      for (size_t i = 0; i < all.size(); ++i) std::swap(all[i], all[i + mask_random.next_u64() % (all.size() - i)]);
      mask.assign(all.begin(), all.begin() + k_hat);
    }
    for (const int32_t e : mask) batch.flags[static_cast<size_t>(token * num_experts + e)] = 1;
    std::vector<int32_t> chosen = mask;
    for (int64_t s = 0; s < top_k; ++s) {
      std::swap(chosen[static_cast<size_t>(s)],
                chosen[static_cast<size_t>(s) + random.next_u64() % (chosen.size() - static_cast<size_t>(s))]);
      batch.experts.push_back(chosen[static_cast<size_t>(s)]);
    }
  }
  return batch;
}

// An expert whose output depends on every row of the call, in order: out = in * (e + 1) + the
// running sum of the call's inputs so far. Equal outputs then mean equal rows in equal order.
LocalExpertFunction order_sensitive_expert(const ExpertPlacement& placement, int rank) {
  const auto own = placement.experts_of(rank);
  return [own](int64_t local, const Tensor& input, std::span<const int32_t> rows, std::span<const int32_t> output_rows,
               Tensor& output) {
    std::vector<float> running(kWidth, 0.0f);
    for (size_t i = 0; i < rows.size(); ++i) {
      for (int64_t c = 0; c < kWidth; ++c) {
        const float value = input.data()[rows[i] * kWidth + c];
        running[static_cast<size_t>(c)] += value * 1e-3f;
        output.data()[output_rows[i] * kWidth + c] =
            value * static_cast<float>(own[static_cast<size_t>(local)] + 1) + running[static_cast<size_t>(c)];
      }
    }
  };
}

// Expert e on rank (e * 5 + 3) % X, E / X each: a placement that is not contiguous.
ExpertPlacement scattered_placement(int64_t num_experts, int ranks) {
  std::vector<int> owners(static_cast<size_t>(num_experts));
  const int64_t per_rank = num_experts / ranks;
  std::vector<int64_t> filled(static_cast<size_t>(ranks), 0);
  for (int64_t e = 0; e < num_experts; ++e) {
    int r = static_cast<int>((e * 5 + 3) % ranks);
    while (filled[static_cast<size_t>(r)] == per_rank) r = (r + 1) % ranks;
    owners[static_cast<size_t>(e)] = r;
    ++filled[static_cast<size_t>(r)];
  }
  return ExpertPlacement::from_owners(owners, ranks);
}

Tensor dispatch_slots(TokenDispatcher& dispatcher, const HeldBatch& batch, int64_t top_k, int64_t layer,
                      bool with_masks) {
  const int64_t tokens = batch.hidden.dim(0);
  Tensor slots({tokens * top_k, kWidth});
  slots.fill(-1.0f);
  const HeldMasksView held{layer, batch.flags};
  dispatcher.dispatch(batch.hidden, batch.experts, top_k, slots,
                      order_sensitive_expert(dispatcher.placement(), dispatcher.rank()), nullptr,
                      with_masks ? &held : nullptr);
  return slots;
}

bool bit_identical(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && std::memcmp(a.data(), b.data(), static_cast<size_t>(a.numel()) * sizeof(float)) == 0;
}

void check_option_equals_token(int64_t num_experts, int64_t top_k, int64_t k_hat, bool scattered) {
  MpiCommunicator world;
  const int rank = world.rank();
  const auto placement = scattered ? scattered_placement(num_experts, world.size())
                                   : ExpertPlacement::contiguous(num_experts, world.size());
  TokenDispatcher token(world, placement), option(world, placement);
  option.set_mode(DispatchMode::option);
  // Uneven loads; rank 1 holds masks but has no tokens.
  const int64_t tokens = rank == 1 ? 0 : 9 + 6 * rank;
  for (uint64_t call = 0; call < 3; ++call) {  // the same masks, new routing inside them each call
    const HeldBatch batch = make_held_batch(rank, tokens, num_experts, top_k, k_hat, 4, 100 + call);
    const Tensor by_token = dispatch_slots(token, batch, top_k, 0, true);
    const Tensor by_option = dispatch_slots(option, batch, top_k, 0, true);
    EXPECT_TRUE(bit_identical(by_token, by_option)) << "rank " << rank << ", call " << call;
    EXPECT_TRUE(testing::all_ranks(world, bit_identical(by_token, by_option)));
    // Left where they landed, the same outputs: row_of_slot finds each slot's.
    SlotRows landed;
    const HeldMasksView held{0, batch.flags};
    option.dispatch_to_rows(batch.hidden, batch.experts, top_k, landed, order_sensitive_expert(placement, rank), &held);
    Tensor gathered({tokens * top_k, kWidth});
    for (int64_t slot = 0; slot < tokens * top_k; ++slot) {
      std::memcpy(gathered.data() + slot * kWidth, landed.rows.data() + landed.row_of_slot[static_cast<size_t>(slot)] * kWidth,
                  kWidth * sizeof(float));
    }
    EXPECT_TRUE(testing::all_ranks(world, bit_identical(by_token, gathered))) << "rank " << rank << ", call " << call;
  }
  const DispatchStatistics& t = token.statistics();
  const DispatchStatistics& o = option.statistics();
  EXPECT_EQ(o.remote_bytes_sent, 2 * t.remote_bytes_sent) << "both modes send the same rows (option mode twice per call)";
  EXPECT_EQ(o.local_bytes, 2 * t.local_bytes);
  EXPECT_EQ(o.plan_rebuilds, 1) << "the masks never switched after the first call";
  EXPECT_EQ(o.counts_exchanges, 1);
  EXPECT_EQ(o.counts_negotiations, 1);
  EXPECT_EQ(o.plan_checks, 6);
  EXPECT_EQ(t.counts_negotiations, 3);
  // Every byte sent (to others or to itself) was received by someone, in both modes.
  for (const DispatchStatistics* statistics : {&t, &o}) {
    double totals[2] = {static_cast<double>(statistics->remote_bytes_sent + statistics->local_bytes),
                        static_cast<double>(statistics->bytes_received)};
    world.all_reduce_sum(std::span<double>(totals, 2));
    EXPECT_EQ(totals[0], totals[1]);
  }
}

TEST(OptionDispatch, EqualsTokenModeBitForBitTopTwoOfEight) { check_option_equals_token(8, 2, 4, false); }

TEST(OptionDispatch, EqualsTokenModeBitForBitWithAScatteredPlacement) {
  check_option_equals_token(16, 2, 12, true);
  check_option_equals_token(16, 3, 6, true);
}

// Masks that lie on one rank's experts: `owner`'s under a contiguous placement.
std::vector<uint8_t> mask_on_rank(int owner, int64_t num_experts, int ranks, int64_t tokens) {
  std::vector<uint8_t> flags(static_cast<size_t>(tokens * num_experts), 0);
  const int64_t per_rank = num_experts / ranks;
  for (int64_t token = 0; token < tokens; ++token) {
    for (int64_t e = owner * per_rank; e < (owner + 1) * per_rank; ++e) flags[static_cast<size_t>(token * num_experts + e)] = 1;
  }
  return flags;
}

// Routes each token to the first k experts of its mask.
std::vector<int32_t> route_inside(const std::vector<uint8_t>& flags, int64_t num_experts, int64_t top_k) {
  std::vector<int32_t> experts;
  for (size_t token = 0; token * static_cast<size_t>(num_experts) < flags.size(); ++token) {
    int64_t taken = 0;
    for (int64_t e = 0; e < num_experts && taken < top_k; ++e) {
      if (flags[token * static_cast<size_t>(num_experts) + static_cast<size_t>(e)]) {
        experts.push_back(static_cast<int32_t>(e));
        ++taken;
      }
    }
  }
  return experts;
}

TEST(OptionDispatch, RebuildsThePlanExactlyWhenAMaskSwitchesAndRenegotiatesOnlyNewBounds) {
  MpiCommunicator world;
  const int rank = world.rank(), ranks = world.size(), last = ranks - 1;
  const int64_t num_experts = 4 * ranks, top_k = 2, tokens = 6;
  TokenDispatcher option(world, ExpertPlacement::contiguous(num_experts, ranks));
  option.set_mode(DispatchMode::option);
  TokenDispatcher token(world, ExpertPlacement::contiguous(num_experts, ranks));
  HeldBatch batch{Tensor({tokens, kWidth}), {}, mask_on_rank((rank + 1) % ranks, num_experts, ranks, tokens)};
  CounterRandom random(3, {static_cast<uint64_t>(rank)});
  for (int64_t i = 0; i < batch.hidden.numel(); ++i) batch.hidden.data()[i] = static_cast<float>(random.normal());
  const auto call = [&](int64_t layer) {
    batch.experts = route_inside(batch.flags, num_experts, top_k);
    const Tensor by_option = dispatch_slots(option, batch, top_k, layer, true);
    const Tensor by_token = dispatch_slots(token, batch, top_k, layer, true);
    EXPECT_TRUE(testing::all_ranks(world, bit_identical(by_token, by_option)));
  };
  const auto expect = [&](int64_t rebuilds, int64_t exchanges, const char* when) {
    EXPECT_EQ(option.statistics().plan_rebuilds, rebuilds) << "rank " << rank << ", " << when;
    EXPECT_EQ(option.statistics().counts_exchanges, exchanges) << "rank " << rank << ", " << when;
  };

  call(0);
  expect(1, 1, "first call: a plan is made and agreed");
  call(0);
  expect(1, 1, "masks held: the plan is reused, nothing is negotiated");
  if (rank == last) {  // token 0 switches to another mask on the same rank: new plan, same bounds
    auto& flags = batch.flags;
    const int64_t first = ((rank + 1) % ranks) * 4;
    flags[static_cast<size_t>(first)] = 0;
    flags[static_cast<size_t>(first + 1)] = 0;
    batch.hidden.data()[0] += 1.0f;
  }
  // (A mask that loses two of its four experts spans the same rank.)
  call(0);
  expect(rank == last ? 2 : 1, 1, "a switch that keeps the bounds: rebuilt where it switched, not renegotiated");
  if (rank == last) {  // token 0 now holds a mask on its own rank: the bound to the old owner drops
    const auto own = mask_on_rank(rank, num_experts, ranks, 1);
    std::copy(own.begin(), own.end(), batch.flags.begin());
  }
  call(0);
  expect(rank == last ? 3 : 1, 1, "a switch that only lowers a bound: rebuilt, the agreed bounds kept");
  call(0);
  expect(rank == last ? 3 : 1, 1, "held again");
  call(1);  // another layer has a plan of its own
  expect(rank == last ? 4 : 2, 2, "the first call of layer 1");
  EXPECT_EQ(option.statistics().plan_checks, 6);
  if (ranks > 2) {  // token 0 moves to a third rank's experts: a new peer, so every rank renegotiates
    if (rank == last) {
      const auto third = mask_on_rank((rank + 2) % ranks, num_experts, ranks, 1);
      std::copy(third.begin(), third.end(), batch.flags.begin());
    }
    call(0);
    expect(rank == last ? 5 : 2, 3, "a switch that raises a bound: renegotiated everywhere");
    call(0);
    expect(rank == last ? 5 : 2, 3, "held again");
  }
  if (ranks > 1) {
    EXPECT_GT(option.statistics().messages, 0);
  }
}

TEST(OptionDispatch, SendsNothingWhenEveryMaskIsOnItsOwnRank) {
  MpiCommunicator world;
  const int rank = world.rank(), ranks = world.size();
  const int64_t num_experts = 2 * ranks, top_k = 2, tokens = 5;
  TokenDispatcher option(world, ExpertPlacement::contiguous(num_experts, ranks));
  option.set_mode(DispatchMode::option);
  HeldBatch batch{Tensor({tokens, kWidth}), {}, mask_on_rank(rank, num_experts, ranks, tokens)};
  batch.hidden.fill(0.5f);
  batch.experts = route_inside(batch.flags, num_experts, top_k);
  dispatch_slots(option, batch, top_k, 0, true);
  dispatch_slots(option, batch, top_k, 0, true);
  EXPECT_EQ(option.statistics().remote_bytes_sent, 0);
  EXPECT_EQ(option.statistics().messages, 0) << "rank " << rank << ": no peer is spanned, so none is sent to";
  EXPECT_EQ(option.statistics().peers, 0);
}

TEST(OptionDispatch, RejectsRoutingOutsideTheHeldMaskOnEveryRank) {
  MpiCommunicator world;
  const int64_t num_experts = 2 * world.size();
  TokenDispatcher option(world, ExpertPlacement::contiguous(num_experts, world.size()));
  option.set_mode(DispatchMode::option);
  HeldBatch batch{Tensor({1, kWidth}), {0}, std::vector<uint8_t>(static_cast<size_t>(num_experts), 0)};
  batch.flags[1] = 1;  // the mask holds expert 1; the token is routed to expert 0
  batch.hidden.fill(1.0f);
  // Checked before the plan's collective: every rank throws, none hangs.
  EXPECT_THROW(dispatch_slots(option, batch, 1, 0, true), Error);
}

}  // namespace
}  // namespace temoe

// shardline/plugin.hpp — write a Shardline plugin with plain C++ types and functions.
//
//   #include <shardline/plugin.hpp>
//   struct Count { std::uint64_t n = 0; };
//   SHARDLINE_PLUGIN("hello", "1.0.0", p) {
//     p.decoder("line", [](std::string_view line) { return std::string(line); });
//     p.partition("word", [](const std::string& w) { return std::string_view(w); });
//     p.state<Count>("count");
//     p.state_computation("add", [](const std::string& w, Count& c) {
//       return w + " " + std::to_string(++c.n);
//     });
//     p.encoder("text", [](const std::string& s) { return s; });
//   }
//
// Every registration deduces the message and state types from the function's signature and
// wraps the function in a component that the host calls once per batch. Exceptions thrown by a
// function are caught per message and reported to the host, which counts them and applies the
// pipeline's error policy; the other messages of the batch carry on. Within one batch,
// shardline::processing_time_ns() is the same for every message (<shardline/processing_time.hpp>).
//
// Accepted signatures (In, Out, S are your types; Out may be wrapped in std::optional to
// emit nothing for some inputs):
//   decoder            Out(Reader&)  or  Out(std::string_view)        [source thread]
//   computation        Out(const In&)  or  void(const In&, Emit<Out>&) [source or shard thread]
//   partition          integer(const In&)  or  string_view/string(const In&)
//   state<S>           default-constructed, or S(), or S(std::uint64_t key)  [shard thread]
//   state_computation  void|Out(const In&, S&)  or  void(const In&, S&, Emit<Out>&) [shard]
//   encoder            void(const In&, Writer&)  or  std::string(const In&) (text)  [shard]
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include <shardline/abi.hpp>
#include <shardline/boundary.hpp>
#include <shardline/bytes.hpp>
#include <shardline/key.hpp>
#include <shardline/processing_time.hpp>
#include <shardline/type_desc.hpp>

namespace shardline {

/// Passed to computations that emit any number of outputs per input.
template <class T>
class Emit {
 public:
  explicit Emit(MessageOutput& out) : out_(out) {}
  /// Appends `value`, moved (or copied) into the engine's output buffer.
  void operator()(T value) { emplace(std::move(value)); }
  /// Appends a T built in the output buffer itself from `args` (none: value-initialized, so a
  /// plain struct starts zeroed) and returns it, for the function to fill in place; the
  /// reference is valid until the function emits its next output (the buffer may grow). A message
  /// filled field by field and then copied (returned in an std::optional, or passed to
  /// operator()) is read back before its stores have left the core: 20-30 ns for a 64-byte
  /// message on the benchmark machine, against 2-3 ns filled in place (bench/RESULTS.md).
  template <class... A>
  T& emplace(A&&... args) {
    T* made = ::new (out_.next_slot()) T(std::forward<A>(args)...);
    out_.commit();
    return *made;
  }

 private:
  MessageOutput& out_;
};

namespace detail {

template <class F>
struct fn_traits : fn_traits<decltype(&std::remove_cvref_t<F>::operator())> {};
template <class R, class... A>
struct fn_traits<R (*)(A...)> {
  using result = R;
  using args = std::tuple<A...>;
  static constexpr bool changes_itself = false;  ///< a mutable lambda's operator()
};
template <class R, class... A>
struct fn_traits<R(A...)> : fn_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct fn_traits<R (C::*)(A...) const> : fn_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct fn_traits<R (C::*)(A...)> : fn_traits<R (*)(A...)> {
  static constexpr bool changes_itself = true;
};

/// Whether the SDK can read F's parameter types: a function, or a lambda or function object
/// with one operator() whose parameters are written out (not a generic lambda's `auto`), taking
/// at least `min_args`. Checked first by every registration, so that a callable it cannot read
/// gets one clear error instead of a page of template instantiations.
template <class F, std::size_t min_args>
constexpr bool readable() {
  using G = std::remove_cvref_t<F>;
  if constexpr (std::is_function_v<std::remove_pointer_t<G>> ||
                requires { &G::operator(); })
    return std::tuple_size_v<typename fn_traits<F>::args> >= min_args;
  else
    return false;
}

template <class F, std::size_t I>
using arg_t = std::remove_cvref_t<std::tuple_element_t<I, typename fn_traits<F>::args>>;
template <class F>
inline constexpr std::size_t arity_v = std::tuple_size_v<typename fn_traits<F>::args>;
template <class F>
using result_t = typename fn_traits<F>::result;

template <class T>
struct unwrap_optional {
  using type = T;
};
template <class T>
struct unwrap_optional<std::optional<T>> {
  using type = T;
};
template <class T>
using unwrap_optional_t = typename unwrap_optional<T>::type;
/// The message a function returns: by value, `const` or not, or a reference to one (copied
/// as the call returns), or a std::optional of any of these.
template <class F>
using returned_message_t = std::remove_cv_t<unwrap_optional_t<std::remove_cvref_t<result_t<F>>>>;
template <class T>
inline constexpr bool is_optional_v = !std::is_same_v<unwrap_optional_t<T>, T>;

template <class T>
struct emit_type {
  using type = void;
};
template <class T>
struct emit_type<Emit<T>> {
  using type = T;
};

/// Whether argument I of F is an Emit<Out>& (the any-number-of-outputs form).
template <class F, std::size_t I>
constexpr bool takes_emit() {
  if constexpr (I < arity_v<F>) {
    using A = std::tuple_element_t<I, typename fn_traits<F>::args>;
    return std::is_lvalue_reference_v<A> &&
           !std::is_void_v<typename emit_type<std::remove_cvref_t<A>>::type>;
  } else {
    return false;
  }
}

/// Whether F's first parameter binds to the message, which the host hands over as an lvalue
/// in its batch: an In&& cannot.
template <class F>
constexpr bool message_binds() {
  return !std::is_rvalue_reference_v<std::tuple_element_t<0, typename fn_traits<F>::args>>;
}

/// Whether F takes its first `inputs` arguments, then optionally an Emit<Out>&, and no more.
template <class F, std::size_t inputs>
constexpr bool inputs_then_emit() {
  return (arity_v<F> == inputs || (arity_v<F> == inputs + 1 && takes_emit<F, inputs>())) &&
         message_binds<F>();
}

/// Whether a parameter of type A is a non-const lvalue reference: what a state computation's
/// state must be, and what its message usually is not.
template <class A>
inline constexpr bool is_changeable_ref_v =
    std::is_lvalue_reference_v<A> && !std::is_const_v<std::remove_reference_t<A>>;

/// Whether F takes an Emit<Out>& after its `inputs` and still returns a value, which nothing
/// would read: its outputs go through `emit` alone.
template <class F, std::size_t inputs>
constexpr bool emits_and_returns() {
  return takes_emit<F, inputs>() && !std::is_void_v<result_t<F>>;
}

/// The output type of a function whose last argument may be Emit<Out>&.
template <class F, std::size_t FixedArgs>
struct output_of {
  static auto deduce() {
    if constexpr (arity_v<F> > FixedArgs) {
      return std::type_identity<typename emit_type<arg_t<F, FixedArgs>>::type>{};
    } else {
      return std::type_identity<returned_message_t<F>>{};
    }
  }
  using type = typename decltype(deduce())::type;
};

/// Whether a message of type T holds its own data. A view or a pointer would point into the
/// frame or the message it was made from, whose memory the host reuses while the message still
/// waits in a batch for its shard.
template <class T>
struct is_view : std::false_type {};
template <class C, class Traits>
struct is_view<std::basic_string_view<C, Traits>> : std::true_type {};
template <class T, std::size_t N>
struct is_view<std::span<T, N>> : std::true_type {};
template <class T>
constexpr bool owns_its_data_v = !is_view<T>::value && !std::is_pointer_v<T>;

template <class T>
const TypeDesc* desc_or_null() {
  if constexpr (std::is_void_v<T>) {
    return nullptr;
  } else {
    return &type_desc_v<T>;
  }
}

/// Runs body() for input i, turning an exception into an error report for input i. Returns
/// whether body() completed.
template <class Body>
bool guarded(std::size_t i, ErrorSink& errors, Body&& body) {
  try {
    body();
    return true;
  } catch (const DecodeError& e) {
    errors.report(i, e.text());
  } catch (const std::exception& e) {
    errors.report(i, e.what());
  } catch (...) {
    errors.report(i, current_exception_text());
  }
  return false;
}

/// Runs body(i) for each message under guarded(); whatever message i emitted into `out` before
/// it threw is rolled back.
template <class Body>
void each_guarded(std::size_t n, MessageOutput* out, ErrorSink& errors, Body&& body) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t mark = out ? out->size() : 0;
    if (!guarded(i, errors, [&] { body(i); }) && out) out->rollback(mark);
  }
}

/// Runs make(i) for each of n inputs under guarded() and keeps what it returns: an Out (built
/// straight in its output slot: guaranteed copy elision, no temporary), an optional<Out>, or
/// something an Out is constructible from. At most one output per input, so the room for all n
/// is made once and the slots are filled through a cursor kept in this loop: nothing of `out`
/// is reloaded from memory after each message's stores. An input that throws keeps nothing.
template <class Out, class Make>
void each_to_slot(std::size_t n, MessageOutput& out, ErrorSink& errors, Make&& make) {
  std::byte* slot = out.room(n);
  const std::size_t stride = out.stride();
  std::size_t made = 0;
  for (std::size_t i = 0; i < n; ++i) {
    guarded(i, errors, [&] {
      if constexpr (is_optional_v<std::remove_cvref_t<decltype(make(i))>>) {
        auto r = make(i);
        if (!r) return;
        ::new (slot) Out(std::move(*r));
      } else {
        ::new (slot) Out(make(i));
      }
      slot += stride;
      ++made;
    });
  }
  out.commit(made);
}

/// Calls fn(args(i)...) for each input, storing what it returns (nothing for a terminal
/// function, Out = void), or fn(args(i)..., emit) when fn takes an Emit<Out>& after its inputs
/// (any number of outputs, as output_of deduces).
template <class Out, class F, class Args>
void run_each(F& fn, std::size_t n, MessageOutput& out, ErrorSink& errors, Args&& args) {
  constexpr std::size_t inputs = std::tuple_size_v<decltype(args(std::size_t{}))>;
  if constexpr (std::is_void_v<Out>) {
    each_guarded(n, nullptr, errors, [&](std::size_t i) { std::apply(fn, args(i)); });
  } else if constexpr (arity_v<F> > inputs) {
    each_guarded(n, &out, errors, [&](std::size_t i) {
      Emit<Out> emit(out);
      std::apply([&](auto&&... a) { fn(a..., emit); }, args(i));
    });
  } else {
    each_to_slot<Out>(n, out, errors,
                      [&](std::size_t i) -> decltype(auto) { return std::apply(fn, args(i)); });
  }
}

template <class F>
class DecoderImpl final : public Decoder {
 public:
  explicit DecoderImpl(F fn) : fn_(std::move(fn)) {}
  using Out = returned_message_t<F>;
  void decode(const Frame* frames, std::size_t n, MessageOutput& out,
              ErrorSink& errors) override {
    const CallTime call;
    each_to_slot<Out>(n, out, errors, [&](std::size_t i) -> decltype(auto) {
      if constexpr (std::is_invocable_v<F&, Reader&>) {
        Reader reader(frames[i]);
        return fn_(reader);
      } else {
        return fn_(frames[i].text());
      }
    });
  }

 private:
  F fn_;
};

template <class F, class In, class Out>
class ComputationImpl final : public Computation {
 public:
  explicit ComputationImpl(F fn) : fn_(std::move(fn)) {}
  void run(MessageSpan in, MessageOutput& out, ErrorSink& errors) override {
    const CallTime call;
    run_each<Out>(fn_, in.count, out, errors,
                  [&](std::size_t i) { return std::forward_as_tuple(in.at<In>(i)); });
  }

 private:
  F fn_;
};

template <class F, class In>
class PartitionImpl final : public Partition {
 public:
  explicit PartitionImpl(F fn) : fn_(std::move(fn)) {}
  void keys(MessageSpan in, std::uint64_t* keys_out, ErrorSink& errors) override {
    const CallTime call;
    each_guarded(in.count, nullptr, errors, [&](std::size_t i) {
      const auto k = fn_(in.at<In>(i));
      if constexpr (std::is_integral_v<decltype(k)>) {
        keys_out[i] = static_cast<std::uint64_t>(k);
      } else if constexpr (std::is_enum_v<std::remove_cv_t<decltype(k)>>) {
        using U = std::underlying_type_t<std::remove_cv_t<decltype(k)>>;
        keys_out[i] = static_cast<std::uint64_t>(static_cast<U>(k));
      } else {
        keys_out[i] = key_of(std::string_view(k));
      }
    });
  }

 private:
  F fn_;
};

template <class S, class F>
class StateFactoryImpl final : public StateFactory {
 public:
  explicit StateFactoryImpl(F fn) : fn_(std::move(fn)) {}
  void construct(void* at, std::uint64_t key) override {
    if constexpr (std::is_invocable_v<F&, std::uint64_t>) {
      ::new (at) S(fn_(key));
    } else {
      ::new (at) S(fn_());
    }
  }

 private:
  F fn_;
};

template <class F, class In, class S, class Out>
class StateComputationImpl final : public StateComputation {
 public:
  explicit StateComputationImpl(F fn) : fn_(std::move(fn)) {}
  void run(MessageSpan in, void* const* states, MessageOutput& out, ErrorSink& errors) override {
    const CallTime call;
    run_each<Out>(fn_, in.count, out, errors, [&](std::size_t i) {
      return std::forward_as_tuple(in.at<In>(i), *std::launder(static_cast<S*>(states[i])));
    });
  }

 private:
  F fn_;
};

template <class F, class In>
class EncoderImpl final : public Encoder {
 public:
  explicit EncoderImpl(F fn) : fn_(std::move(fn)) {}
  void encode(MessageSpan in, EncodedOutput& out, ErrorSink& errors) override {
    const CallTime call;
    each_guarded(in.count, nullptr, errors, [&](std::size_t i) {
      out.begin_message();
      try {
        if constexpr (std::is_invocable_v<F&, const In&, Writer&>) {
          {
            Writer writer(out);  // hands its position back to `out` when it goes
            fn_(in.at<In>(i), writer);
          }
          out.end_message();  // throws for a newline in a line (caught below)
        } else {
          // Keep the returned string alive while its bytes are copied.
          const auto text = fn_(in.at<In>(i));
          const std::string_view view(text);
          out.check_line(view.data(), view.size());  // throws for a newline in a line
          out.append(view.data(), view.size());
          out.end_checked_message();
        }
      } catch (...) {
        out.abandon_message();
        throw;
      }
    });
  }

 private:
  F fn_;
};

}  // namespace detail

/// Registers the components of one plugin. Used inside SHARDLINE_PLUGIN only.
class PluginBuilder {
 public:
  explicit PluginBuilder(Manifest& manifest) : m_(manifest) {}

  /// Frame -> message. Throw (or let Reader throw) to reject a malformed frame.
  template <class F>
  PluginBuilder& decoder(std::string name, F fn) {
    constexpr bool takes_frame = [] {
      if constexpr (detail::readable<F, 1>())
        return std::is_invocable_v<F&, Reader&> || std::is_invocable_v<F&, std::string_view>;
      else
        return false;
    }();
    // Each failed check returns at once: what follows it would only add errors about a type
    // that does not exist (type_desc_v<void>, ...) under the one that explains the mistake.
    if constexpr (!check_readable<F, 1>()) {
      return *this;
    } else if constexpr (!takes_frame) {
      static_assert(takes_frame,
                    "a decoder takes shardline::Reader& (a binary frame) or std::string_view (a "
                    "text line), and returns the message (or a std::optional of it)");
      return *this;
    } else if constexpr (std::is_void_v<detail::returned_message_t<F>>) {
      static_assert(!std::is_void_v<detail::returned_message_t<F>>,
                    "a decoder must return the decoded message");
      return *this;
    } else {
      using Out = detail::returned_message_t<F>;
      if constexpr (!owns_its_data<Out>()) {
        return *this;
      } else {
        return add(ComponentKind::decoder, std::move(name), nullptr, &type_desc_v<Out>, nullptr,
                   std::make_unique<detail::DecoderImpl<F>>(std::move(fn)));
      }
    }
  }

  /// Stateless step: In -> Out, optional<Out>, or any number of Out through Emit<Out>&.
  template <class F>
  PluginBuilder& computation(std::string name, F fn) {
    // As in decoder(): each failed check returns at once, so its error is the only one.
    if constexpr (!check_readable<F, 1>()) {
      return *this;
    } else if constexpr (!detail::inputs_then_emit<F, 1>()) {
      static_assert(detail::inputs_then_emit<F, 1>(),
                    "a computation is Out(const In&), std::optional<Out>(const In&), or "
                    "void(const In&, shardline::Emit<Out>&)");
      return *this;
    } else if constexpr (std::is_void_v<typename detail::output_of<F, 1>::type>) {
      static_assert(!std::is_void_v<typename detail::output_of<F, 1>::type>,
                    "a computation must produce a message type");
      return *this;
    } else {
      static_assert(!detail::emits_and_returns<F, 1>(),
                    "a function that takes shardline::Emit<Out>& emits through it and returns "
                    "void: a value it returned would be dropped");
      using In = detail::arg_t<F, 0>;
      using Out = typename detail::output_of<F, 1>::type;
      if constexpr (!owns_its_data<Out>()) {
        return *this;
      } else {
        return add(ComponentKind::computation, std::move(name), &type_desc_v<In>,
                   &type_desc_v<Out>, nullptr,
                   std::make_unique<detail::ComputationImpl<F, In, Out>>(std::move(fn)));
      }
    }
  }

  /// Message -> key. Return an integer for integer keys, a string(_view) for string keys.
  template <class F>
  PluginBuilder& partition(std::string name, F fn) {
    if constexpr (!check_readable<F, 1>()) {
      return *this;
    } else {
      static_assert(detail::arity_v<F> == 1 && detail::message_binds<F>(),
                    "a partition function takes the message (const In&) and returns its key");
      using In = detail::arg_t<F, 0>;
      using K = std::remove_cvref_t<detail::result_t<F>>;
      constexpr bool integer_key = std::is_integral_v<K> || std::is_enum_v<K>;
      static_assert(integer_key || std::is_convertible_v<K, std::string_view>,
                    "a partition function returns an integer (or an enum) or a string key");
      return add(ComponentKind::partition, std::move(name), &type_desc_v<In>, nullptr, nullptr,
                 std::make_unique<detail::PartitionImpl<F, In>>(std::move(fn)),
                 integer_key ? KeyKind::integer : KeyKind::string);
    }
  }

  /// Partitioned state type S: default-constructed for each new key.
  template <class S>
  PluginBuilder& state(std::string name) {
    // S{} rather than S(): an aggregate with a const member and no initializer is built by
    // S{} (value-initialising it) but is not default-constructible.
    constexpr bool brace_constructible = requires { S{}; };
    if constexpr (!brace_constructible) {
      static_assert(brace_constructible,
                    "p.state<S>(name) makes each new key's state as S{}, and S has no default "
                    "constructor: add one, or pass a factory, p.state<S>(name, "
                    "[](std::uint64_t key) { return S{...}; })");
      return *this;
    } else {
      return state<S>(std::move(name), [] { return S{}; });
    }
  }

  /// Partitioned state type S built by fn() or fn(key) for each new key.
  template <class S, class F>
  PluginBuilder& state(std::string name, F fn) {
    if constexpr (!std::is_move_constructible_v<S>) {
      static_assert(std::is_move_constructible_v<S>,
                    "a state must be movable: the engine moves states when a reload carries them "
                    "over. It needs no lock: its key's shard runs one message at a time, so "
                    "drop any std::mutex or std::atomic member");
      return *this;
    } else if constexpr (!std::is_invocable_r_v<S, F&> &&
                         !std::is_invocable_r_v<S, F&, std::uint64_t>) {
      // Alone: the checks below would also fail, and blame a mutable lambda that is not there.
      static_assert(std::is_invocable_r_v<S, F&> || std::is_invocable_r_v<S, F&, std::uint64_t>,
                    "a state factory is S() or S(std::uint64_t key), returning the state S");
      return *this;
    } else {
      static_assert(std::is_invocable_r_v<S, const F&> ||
                        std::is_invocable_r_v<S, const F&, std::uint64_t>,
                    "a plugin function must not change itself (a mutable lambda, or an "
                    "operator() that is not const): the same object is called by several "
                    "threads at once; keep what changes in a state");
      static_assert(detail::owns_its_data_v<S>,
                    "a state must own its data: a view or a pointer would point into memory that "
                    "is reused while the state lives on; hold a std::string or a std::vector");
      static_assert(detail::Saveable<S> || !detail::NamesSave<S>,
                    "the state's save() must be `void save(shardline::Writer&) const`: with "
                    "another signature it would be ignored, and a reload could not carry the "
                    "state over");
      static_assert(detail::Restorable<S> || !detail::NamesRestore<S>,
                    "the state's restore() must be `static S restore(shardline::Reader&, "
                    "std::uint32_t schema_version)`: with another signature it would be ignored, "
                    "and a reload could not carry the state over");
      return add(ComponentKind::state, std::move(name), nullptr, nullptr, &type_desc_v<S>,
                 std::make_unique<detail::StateFactoryImpl<S, F>>(std::move(fn)));
    }
  }

  /// (In, State&) -> nothing, Out, optional<Out>, or any number of Out through Emit<Out>&.
  template <class F>
  PluginBuilder& state_computation(std::string name, F fn) {
    // One parameter is enough to be read: a function missing its state then gets the message
    // that names the signature, not the one about generic lambdas. As in decoder(), each
    // failed check returns at once, so its error is the only one.
    if constexpr (!check_readable<F, 1>()) {
      return *this;
    } else if constexpr (!detail::inputs_then_emit<F, 2>()) {
      static_assert(detail::inputs_then_emit<F, 2>(),
                    "a state computation takes (const In&, S&) and returns nothing, Out or "
                    "std::optional<Out>; or takes (const In&, S&, shardline::Emit<Out>&)");
      return *this;
    } else {
      static_assert(!detail::emits_and_returns<F, 2>(),
                    "a function that takes shardline::Emit<Out>& emits through it and returns "
                    "void: a value it returned would be dropped");
      using MessageArg = std::tuple_element_t<0, typename detail::fn_traits<F>::args>;
      using StateArg = std::tuple_element_t<1, typename detail::fn_traits<F>::args>;
      // (S& s, const In& m): without this, the message below would blame the const In&.
      constexpr bool state_first =
          detail::is_changeable_ref_v<MessageArg> && !detail::is_changeable_ref_v<StateArg>;
      static_assert(!state_first,
                    "a state computation takes the message first and its state second: "
                    "(const In&, S&)");
      static_assert(state_first || detail::is_changeable_ref_v<StateArg>,
                    "a state computation takes its state by non-const reference (S&): a copy "
                    "would lose every change to it");
      using In = detail::arg_t<F, 0>;
      using S = detail::arg_t<F, 1>;
      using Out = typename detail::output_of<F, 2>::type;
      if constexpr (!owns_its_data<Out>()) {
        return *this;
      } else {
        return add(ComponentKind::state_computation, std::move(name), &type_desc_v<In>,
                   detail::desc_or_null<Out>(), &type_desc_v<S>,
                   std::make_unique<detail::StateComputationImpl<F, In, S, Out>>(std::move(fn)));
      }
    }
  }

  /// Message -> bytes, written with a Writer, or returned as text.
  template <class F>
  PluginBuilder& encoder(std::string name, F fn) {
    if constexpr (!check_readable<F, 1>()) {
      return *this;
    } else {
      using In = detail::arg_t<F, 0>;
      static_assert(std::is_invocable_v<F&, const In&, Writer&> ||
                        (detail::arity_v<F> == 1 && detail::message_binds<F>() &&
                         std::is_convertible_v<detail::result_t<F>, std::string_view>),
                    "an encoder is void(const In&, shardline::Writer&) (binary), or returns the "
                    "text, std::string(const In&)");
      return add(ComponentKind::encoder, std::move(name), &type_desc_v<In>, nullptr, nullptr,
                 std::make_unique<detail::EncoderImpl<F, In>>(std::move(fn)));
    }
  }

 private:
  /// Used as `if constexpr (!check_readable<F, n>()) return *this; else ...`: the one error
  /// for a callable whose types cannot be read, and nothing else instantiated after it.
  template <class F, std::size_t min_args>
  static constexpr bool check_readable() {
    static_assert(detail::readable<F, min_args>(),
                  "write out the function's parameter types, e.g. [](const In& m) { ... }: the "
                  "SDK reads the message and state types from them, so a generic lambda (auto "
                  "parameters) or a function without the message cannot be registered");
    if constexpr (detail::readable<F, min_args>())
      static_assert(!detail::fn_traits<F>::changes_itself,
                    "a plugin function must not change itself (a mutable lambda, or an "
                    "operator() that is not const): the same object is called by several "
                    "threads at once; keep what changes in a state");
    return detail::readable<F, min_args>();
  }

  /// Checks that a message type Out (void: none) holds its own data (see
  /// detail::owns_its_data_v) and can be moved; used like check_readable, so that a message the
  /// engine cannot move gets this one error, not also those of the code that would move it.
  /// [decoder, computation, state_computation]
  template <class Out>
  static constexpr bool owns_its_data() {
    static_assert(detail::owns_its_data_v<Out>,
                  "a message must own its data: a view or a pointer would point into a frame or "
                  "a message whose memory is reused while this one is still on its way; return "
                  "std::string rather than std::string_view, a std::vector rather than a "
                  "std::span or a pointer");
    static_assert(std::is_void_v<Out> || std::is_move_constructible_v<Out>,
                  "a message must be movable: the engine moves messages between threads; drop "
                  "any std::mutex or std::atomic member");
    return detail::owns_its_data_v<Out> &&
           (std::is_void_v<Out> || std::is_move_constructible_v<Out>);
  }

  /// `key_kind`: what a partition function returns (other components: unused).
  PluginBuilder& add(ComponentKind kind, std::string name, const TypeDesc* in,
                     const TypeDesc* out, const TypeDesc* state,
                     std::unique_ptr<Component> impl, KeyKind key_kind = KeyKind::integer) {
    for (const auto& c : m_.components)
      if (c.kind == kind && c.name == name)
        throw std::invalid_argument("duplicate " + std::string(to_string(kind)) + " '" + name +
                                    "'");
    m_.components.push_back(
        ComponentInfo{kind, std::move(name), in, out, state, key_kind, std::move(impl)});
    return *this;
  }

  Manifest& m_;
};

namespace detail {
inline Manifest build_manifest(const char* name, const char* version,
                               void (*register_components)(PluginBuilder&)) {
  Manifest m;
  m.plugin_name = name;
  m.plugin_version = version;
  try {
    PluginBuilder builder(m);
    register_components(builder);
  } catch (...) {  // whatever it is: it must not leave the plugin's entry point
    m.components.clear();
    m.error = current_exception_text();
  }
  return m;
}
}  // namespace detail

}  // namespace shardline

/// Defines a plugin: its name, its version, and a body that registers its components on the
/// PluginBuilder named BUILDER. Exports the ABI record (read by the host before loading) and
/// the manifest entry point (called once, after the ABI was accepted). Use once per plugin.
#define SHARDLINE_PLUGIN(NAME, VERSION, BUILDER)                                               \
  static void shardline_register_components(::shardline::PluginBuilder& BUILDER);             \
  extern "C" SHARDLINE_API __attribute__((used, section("shardline_abi")))                     \
  const ::shardline::AbiRecord shardline_abi_record = ::shardline::kAbiRecord;                 \
  extern "C" SHARDLINE_API const ::shardline::Manifest* shardline_plugin_manifest() {          \
    static const ::shardline::Manifest manifest =                                              \
        ::shardline::detail::build_manifest(NAME, VERSION, &shardline_register_components);    \
    return &manifest;                                                                          \
  }                                                                                            \
  static void shardline_register_components(::shardline::PluginBuilder& BUILDER)

// Each policy parameter is declared once (policies/params.h): the documented defaults ARE what a
// bare spec runs with, and every documented parameter is accepted by the parser.
#include <gtest/gtest.h>

#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "policies/params.h"
#include "policies/registry.h"
#include "util/error.h"

namespace kvsim {
namespace {

// `name(key=default, ...)` from the documented table, in table order (empty defaults left out).
std::string documented_spec(const PolicyInfo& info) {
  std::string list;
  for (const PolicyParam& p : info.params) {
    if (!p.default_value.empty()) list += (list.empty() ? "" : ", ") + p.name + "=" + p.default_value;
  }
  return list.empty() ? info.name : info.name + "(" + list + ")";
}

std::string spec_or_error(const PolicyRegistry& registry, const std::string& spec) {
  try {
    return registry.create(spec)->spec();
  } catch (const std::exception& e) {  // InputError, or logic_error for a table the code disagrees with
    return std::string("error: ") + e.what();
  }
}

// Every disagreement between a registry's tables and its parsers, one line each.
std::vector<std::string> table_mismatches(const PolicyRegistry& registry) {
  std::vector<std::string> out;
  for (const PolicyInfo& info : registry.all()) {
    const std::string expected = documented_spec(info);
    // The defaults the getters use are the documented ones, written canonically.
    const std::string bare = spec_or_error(registry, info.name);
    if (bare != expected) out.push_back(info.name + ": spec " + bare + ", documented defaults " + expected);
    std::set<std::string> names;
    for (const PolicyParam& p : info.params) {
      if (!names.insert(p.name).second) out.push_back(info.name + ": parameter '" + p.name + "' documented twice");
      if (p.default_value.empty()) continue;  // no default to pass (headmask's mask=PATH)
      // Each documented parameter is accepted, and its default given explicitly changes nothing.
      const std::string spec = info.name + "(" + p.name + "=" + p.default_value + ")";
      const std::string got = spec_or_error(registry, spec);
      if (got != expected) out.push_back(spec + ": " + got + ", expected " + expected);
      // A default that depends on another parameter: that value alone gives it.
      for (const ParamDefaultIf& d : p.default_if) {
        const std::string with = info.name + "(" + d.key + "=" + d.value + ")";
        const std::string explicit_default =
            info.name + "(" + d.key + "=" + d.value + ", " + p.name + "=" + d.default_value + ")";
        const std::string a = spec_or_error(registry, with);
        const std::string b = spec_or_error(registry, explicit_default);
        if (a != b || a.find(p.name + "=" + d.default_value) == std::string::npos) {
          out.push_back(with + ": " + a + "; with the default explicit: " + b);
        }
      }
    }
  }
  return out;
}

TEST(ParamTable, BuiltinPoliciesRunWithTheirDocumentedDefaults) {
  const std::vector<std::string> mismatches = table_mismatches(PolicyRegistry::builtin());
  for (const std::string& m : mismatches) ADD_FAILURE() << m;
  EXPECT_GE(PolicyRegistry::builtin().all().size(), 24u);
}

TEST(ParamTable, DocumentedDefaultsPrintAsKvsimPolicies) {
  for (const PolicyInfo& info : PolicyRegistry::builtin().all()) {
    for (const PolicyParam& p : info.params) {
      if (info.name == "kvzip" && p.name == "budget") {
        EXPECT_EQ(documented_default(p, info.params), "0.3 (token), 0.6 (head)");
      } else if (info.name == "kvzip" && p.name == "alloc") {
        EXPECT_EQ(documented_default(p, info.params), "global (post_fill), layer (chunk), layer (none)");
      } else if (p.name == "mask") {
        EXPECT_EQ(documented_default(p, info.params), "(none)");
      } else {
        EXPECT_EQ(documented_default(p, info.params), p.default_value) << info.name << " " << p.name;
      }
    }
  }
}

// A toy policy whose spec is whatever PolicyArgs made of the table.
class TablePolicy final : public Policy {
 public:
  explicit TablePolicy(std::string spec) : spec_(std::move(spec)) {}
  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return {}; }
  void evict(const EvictionContext&, LayerResidency&) const override {}

 private:
  std::string spec_;
};

PolicyInfo toy(std::vector<PolicyParam> params, std::function<void(PolicyArgs&)> read) {
  return {"toy", "-", "-", std::move(params), [read](PolicyArgs& args) -> std::unique_ptr<Policy> {
            read(args);
            return std::make_unique<TablePolicy>(args.canonical());
          }};
}

TEST(ParamTable, CatchesTablesTheParserDisagreesWith) {
  const auto reads_sinks = [](PolicyArgs& args) { args.get_int("sinks"); };
  {  // Agreeing table: no mismatch.
    PolicyRegistry r;
    r.add(toy({{"sinks", "4", ""}}, reads_sinks));
    EXPECT_TRUE(table_mismatches(r).empty());
    EXPECT_EQ(r.create("toy(sinks=07)")->spec(), "toy(sinks=7)");
  }
  {  // A default not written canonically: the spec prints 4, the docs 04.
    PolicyRegistry r;
    r.add(toy({{"sinks", "04", ""}}, reads_sinks));
    EXPECT_FALSE(table_mismatches(r).empty());
  }
  {  // The policy canonicalises the value to something other than its documented default.
    PolicyRegistry r;
    r.add(toy({{"sinks", "4", ""}}, [](PolicyArgs& args) {
      args.get_int("sinks");
      args.set_canonical("sinks", "8");
    }));
    EXPECT_FALSE(table_mismatches(r).empty());
  }
  {  // A documented parameter that is never read.
    PolicyRegistry r;
    r.add(toy({{"sinks", "4", ""}, {"window", "32", ""}}, reads_sinks));
    EXPECT_FALSE(table_mismatches(r).empty());
    EXPECT_THROW(r.create("toy"), std::logic_error);
  }
  {  // A parameter read that the table lacks.
    PolicyRegistry r;
    r.add(toy({}, reads_sinks));
    EXPECT_FALSE(table_mismatches(r).empty());
    EXPECT_THROW(r.create("toy"), std::logic_error);
  }
  {  // A default of the wrong type for its getter.
    PolicyRegistry r;
    r.add(toy({{"sinks", "0.5", ""}}, reads_sinks));
    EXPECT_THROW(r.create("toy"), std::logic_error);
  }
  {  // A default_if that does not hold.
    PolicyRegistry r;
    r.add(toy({{"level", "a", ""}, {"budget", "0.3", "", {{"level", "b", "0.6"}}}}, [](PolicyArgs& args) {
      args.get_choice("level", {"a", "b"});
      args.get_double("budget");
      args.set_canonical("budget", "0.3");
    }));
    EXPECT_FALSE(table_mismatches(r).empty());
  }
}

TEST(ParamTable, DependentDefaultNeedsItsKeyReadFirst) {
  PolicyRegistry r;
  r.add(toy({{"budget", "0.3", "", {{"level", "b", "0.6"}}}, {"level", "a", ""}}, [](PolicyArgs& args) {
    args.get_double("budget");
    args.get_choice("level", {"a", "b"});
  }));
  EXPECT_THROW(r.create("toy"), std::logic_error);
}

TEST(ParamTable, UserErrorsKeepSpecArgsText) {
  PolicyRegistry r;
  r.add(toy({{"sinks", "4", ""}}, [](PolicyArgs& args) { args.get_int("sinks"); }));
  try {
    r.create("toy(sinks=x)");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("parameter 'sinks': expected an integer, got 'x'"), std::string::npos)
        << e.what();
  }
  try {
    r.create("toy(sink=1)");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown parameter for 'toy' (known: sinks)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvsim

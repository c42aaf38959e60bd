#include "request/outputs.h"

#include <gtest/gtest.h>

namespace imgproc::request {
namespace {

TEST(OutputTokenTest, TheSeedsOutputIsJpegQuality50) {
  EXPECT_EQ(Token(OutputSettings{}), "jpeg-q50");
  EXPECT_TRUE(IsSeedOutput(OutputSettings{}));
  EXPECT_FALSE(IsSeedOutput(OutputSettings{OutputFormat::kJpeg, 50, 0, 0, true}));
}

TEST(OutputTokenTest, EverySettingIsInTheTokenAndReadBack) {
  const OutputSettings settings[] = {
      {OutputFormat::kWebp, 70, 400, 400, false},
      {OutputFormat::kJpeg, 80, 1600, 0, true},
      {OutputFormat::kAvif, 1, 0, 300, false},
      {OutputFormat::kJpeg, 100, 0, 0, false},
  };
  EXPECT_EQ(Token(settings[0]), "webp-q70-400x400");
  EXPECT_EQ(Token(settings[1]), "jpeg-q80-1600x0-p");
  EXPECT_EQ(Token(settings[2]), "avif-q1-0x300");
  for (const auto& s : settings) {
    const auto back = ParseToken(Token(s));
    ASSERT_TRUE(back) << Token(s);
    EXPECT_EQ(*back, s);
  }
}

TEST(OutputTokenTest, OnlyTheOneSpellingOfValidSettingsIsRead) {
  for (const char* bad : {"", "jpeg", "png-q50", "jpeg-q0", "jpeg-q101", "jpeg-q050",
                          "jpeg-q50-0x0", "jpeg-q50-10", "webp-q50-p", "jpeg-q50-p-10x10",
                          "jpeg-q50-x", "JPEG-q50", "jpeg-q50-99999x1", "jpeg-q50--p"}) {
    EXPECT_FALSE(ParseToken(bad)) << bad;
  }
}

TEST(OutputPlanTest, TheSeedsPlanIsStoredAsNothing) {
  EXPECT_EQ(EncodePlan(OutputPlan{}), "");
  const auto seed = DecodePlan("");
  ASSERT_TRUE(seed);
  EXPECT_EQ(*seed, OutputPlan{});
}

TEST(OutputPlanTest, APlanWithVariantsIsReadBackInOrder) {
  OutputPlan plan;
  plan.main = OutputSettings{OutputFormat::kWebp, 60, 0, 0, false};
  plan.variants = {{"thumb", {OutputFormat::kWebp, 70, 400, 400, false}},
                   {"large", {OutputFormat::kJpeg, 80, 1600, 1600, true}}};
  const std::string text = EncodePlan(plan);
  EXPECT_EQ(text, "webp-q60;thumb=webp-q70-400x400;large=jpeg-q80-1600x1600-p");
  const auto back = DecodePlan(text);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, plan);
  // The seed's main output with variants is not the seed's plan: it is written out.
  plan.main = OutputSettings{};
  EXPECT_EQ(EncodePlan(plan), "jpeg-q50;thumb=webp-q70-400x400;large=jpeg-q80-1600x1600-p");
  for (const char* bad : {"jpeg-q50;", "jpeg-q50;thumb", "jpeg-q50;Thumb=webp-q70",
                          "jpeg-q50;thumb=webp", "nonsense"}) {
    EXPECT_FALSE(DecodePlan(bad)) << bad;
  }
}

TEST(ChooseOutputsTest, NoFieldsIsTheSeedsPlan) {
  const OutputChoice choice = ChooseOutputs(OutputFields{}, DefaultPresets());
  ASSERT_TRUE(choice.plan);
  EXPECT_EQ(*choice.plan, OutputPlan{});
  OutputFields blank;
  blank.format = " ";
  blank.quality = "";
  blank.presets = " , ";
  ASSERT_TRUE(ChooseOutputs(blank, DefaultPresets()).plan);
  EXPECT_EQ(*ChooseOutputs(blank, DefaultPresets()).plan, OutputPlan{});
}

TEST(ChooseOutputsTest, FieldsSetTheMainOutputAndPresetsAddVariants) {
  OutputFields fields;
  fields.format = "WebP";
  fields.max_width = "800";
  fields.presets = "thumb, large,thumb";
  const OutputChoice choice = ChooseOutputs(fields, DefaultPresets());
  ASSERT_TRUE(choice.plan) << choice.error;
  EXPECT_EQ(choice.plan->main, (OutputSettings{OutputFormat::kWebp, 70, 800, 0, false}));
  ASSERT_EQ(choice.plan->variants.size(), 2u);  // named twice, made once
  EXPECT_EQ(choice.plan->variants[0].name, "thumb");
  EXPECT_EQ(choice.plan->variants[0].settings, DefaultPresets().at("thumb"));
  EXPECT_EQ(choice.plan->variants[1].name, "large");

  fields = OutputFields{};
  fields.quality = "85";
  fields.progressive = "true";
  const OutputChoice jpeg = ChooseOutputs(fields, DefaultPresets());
  ASSERT_TRUE(jpeg.plan);
  EXPECT_EQ(jpeg.plan->main, (OutputSettings{OutputFormat::kJpeg, 85, 0, 0, true}));
}

TEST(ChooseOutputsTest, ABadFieldIsNamed) {
  struct Case {
    OutputFields fields;
    std::string field;
  };
  auto with = [](auto member, std::string value) {
    OutputFields f;
    f.*member = std::move(value);
    return f;
  };
  OutputFields webp_progressive;
  webp_progressive.format = "webp";
  webp_progressive.progressive = "1";
  const Case cases[] = {
      {with(&OutputFields::format, "png"), "format"},
      {with(&OutputFields::quality, "0"), "quality"},
      {with(&OutputFields::quality, "101"), "quality"},
      {with(&OutputFields::quality, "50.5"), "quality"},
      {with(&OutputFields::max_width, "-1"), "max_width"},
      {with(&OutputFields::max_width, "20000"), "max_width"},
      {with(&OutputFields::max_height, "wide"), "max_height"},
      {with(&OutputFields::progressive, "yes"), "progressive"},
      {webp_progressive, "progressive"},
      {with(&OutputFields::presets, "thumb,huge"), "presets"},
  };
  for (const auto& c : cases) {
    const OutputChoice choice = ChooseOutputs(c.fields, DefaultPresets());
    EXPECT_FALSE(choice.plan) << c.field;
    EXPECT_EQ(choice.field, c.field);
    EXPECT_NE(choice.error.find(c.field), std::string::npos) << choice.error;
  }
  const OutputChoice unknown =
      ChooseOutputs(with(&OutputFields::presets, "huge"), DefaultPresets());
  EXPECT_EQ(unknown.error,
            "presets names \"huge\", which this service does not have (it has: large, thumb)");
}

TEST(ChooseOutputsTest, AtMostEightPresets) {
  Presets many;
  std::string names;
  for (int i = 0; i < 9; ++i) {
    many["p" + std::to_string(i)] = OutputSettings{};
    names += "p" + std::to_string(i) + ",";
  }
  OutputFields fields;
  fields.presets = names;
  EXPECT_EQ(ChooseOutputs(fields, many).field, "presets");
}

TEST(PresetNameTest, LowerCaseLettersDigitsDashAndUnderscore) {
  EXPECT_TRUE(IsPresetName("thumb"));
  EXPECT_TRUE(IsPresetName("w-800_2x"));
  EXPECT_FALSE(IsPresetName(""));
  EXPECT_FALSE(IsPresetName("-x"));
  EXPECT_FALSE(IsPresetName("Thumb"));
  EXPECT_FALSE(IsPresetName("a;b"));
  EXPECT_FALSE(IsPresetName(std::string(33, 'a')));
}

}  // namespace
}  // namespace imgproc::request

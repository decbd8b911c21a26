"""Duplicate suggestions on realistic residents' texts."""

from workflow.similar import most_similar

OPEN_TOPICS = [
    (1, "3号楼前路灯不亮", "晚上很黑，老人出门不安全"),
    (2, "运河步道沿线增设公共厕所", "步道3公里没有一处公厕"),
    (3, "小区下水道经常堵塞", "每个月都堵，污水外溢"),
    (4, "夜间施工噪音扰民", "工地干到夜里十二点"),
    (5, "希望增设老年人休息长椅", "步行道没有歇脚的地方"),
    (6, "广场舞音响太吵", "晚上九点以后还在放音乐"),
    (7, "老楼加装电梯", "六层楼没有电梯，老人上下楼难"),
    (8, "东门垃圾站清运不及时", "垃圾桶天天满出来"),
]


def keys(title: str, background: str = "") -> list[int]:
    return [m.key for m in most_similar(title, background, OPEN_TOPICS)]


def test_same_matter_in_other_words_is_found_first() -> None:
    assert keys("路灯坏了", "3号楼门口的路灯好几天不亮了")[0] == 1
    assert keys("步道上没有厕所", "在运河边散步想上厕所找不到")[0] == 2
    assert keys("下水道堵了", "污水从井盖冒出来")[0] == 3
    assert keys("工地晚上施工太吵", "夜里噪音睡不着")[0] == 4


def test_paraphrases_meet_through_the_synonym_table() -> None:
    # No two characters in common with the topic's title: 拉走 is 清运, 跳舞 is 广场舞.
    assert keys("垃圾好几天没人拉走") == [8]
    assert keys("跳舞的音乐吵得睡不着") == [6]
    assert keys("楼里没电梯老人爬不动") == [7]


def test_a_far_weaker_match_is_left_out() -> None:
    # 路灯 and 夜间 make the second topic (施工, 夜里) a match too, far behind the first.
    found = most_similar("路灯坏了晚上黑", "", OPEN_TOPICS, threshold=0.0, relative=0.0)
    assert [m.key for m in found][:1] == [1] and len(found) > 1
    assert keys("路灯坏了晚上黑") == [1]


def test_unrelated_matters_are_not_suggested() -> None:
    assert keys("菜市场门口乱停车", "早上电动车堵住通道") == []
    assert keys("暑期留守儿童托管班") == []
    assert keys("路面坑洼不平") == []


def test_at_most_three_best_first() -> None:
    many = [(i, "路灯不亮", "晚上很黑") for i in range(10, 16)]
    found = most_similar("路灯不亮", "晚上很黑", many)
    assert [m.key for m in found] == [10, 11, 12]
    assert all(m.score > 0.99 for m in found)


def test_full_width_and_case_do_not_matter() -> None:
    assert keys("３号楼前路灯不亮")[0] == 1

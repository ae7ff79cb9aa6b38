"""A small Chinese → English glossary of common ImageNet/COCO nouns.

MiniLM and the ImageNet class names are English, so a Chinese query such as "猫" cannot reach the
semantic and zero-shot scores by itself. ``translate`` replaces every glossary word found in the
query (longest match first) by its English noun; the keyword search still uses the original text,
so Chinese captions, tags and OCR text are matched directly.
"""
from __future__ import annotations

import re

GLOSSARY: dict[str, str] = {
    # people
    "人": "person", "男人": "man", "女人": "woman", "男孩": "boy", "女孩": "girl", "孩子": "child",
    "小孩": "child", "婴儿": "baby", "人们": "people", "老人": "old man", "新娘": "bride", "新郎": "groom",
    # animals
    "猫": "cat", "小猫": "kitten", "狗": "dog", "小狗": "puppy", "鸟": "bird", "马": "horse", "牛": "cow",
    "羊": "sheep", "猪": "pig", "鸡": "chicken", "鸭": "duck", "鹅": "goose", "鱼": "fish", "熊": "bear",
    "大象": "elephant", "象": "elephant", "斑马": "zebra", "长颈鹿": "giraffe", "老虎": "tiger",
    "狮子": "lion", "猴子": "monkey", "兔子": "rabbit", "松鼠": "squirrel", "蛇": "snake", "乌龟": "turtle",
    "蝴蝶": "butterfly", "蜘蛛": "spider", "青蛙": "frog", "企鹅": "penguin", "鲨鱼": "shark",
    # vehicles
    "车": "car", "汽车": "car", "自行车": "bicycle", "摩托车": "motorcycle", "公交车": "bus",
    "公共汽车": "bus", "卡车": "truck", "火车": "train", "飞机": "airplane", "船": "boat", "帆船": "sailboat",
    # places and scenes
    "海滩": "beach", "沙滩": "beach", "海": "sea", "大海": "sea", "山": "mountain", "雪": "snow",
    "湖": "lake", "河": "river", "森林": "forest", "树": "tree", "花": "flower", "草地": "grass",
    "城市": "city", "街道": "street", "桥": "bridge", "房子": "house", "教堂": "church", "城堡": "castle",
    "瀑布": "waterfall", "沙漠": "desert", "公园": "park", "天空": "sky", "日落": "sunset",
    # objects
    "椅子": "chair", "沙发": "sofa", "床": "bed", "桌子": "table", "电视": "television",
    "电脑": "computer", "笔记本电脑": "laptop", "手机": "cell phone", "键盘": "keyboard", "鼠标": "mouse",
    "书": "book", "时钟": "clock", "钟": "clock", "花瓶": "vase", "剪刀": "scissors", "雨伞": "umbrella",
    "伞": "umbrella", "背包": "backpack", "手提包": "handbag", "领带": "tie", "行李箱": "suitcase",
    "瓶子": "bottle", "杯子": "cup", "碗": "bowl", "刀": "knife", "勺子": "spoon", "叉子": "fork",
    "披萨": "pizza", "比萨": "pizza", "蛋糕": "cake", "香蕉": "banana", "苹果": "apple", "橙子": "orange",
    "西兰花": "broccoli", "胡萝卜": "carrot", "热狗": "hot dog", "三明治": "sandwich", "咖啡": "coffee",
    "球": "ball", "足球": "soccer ball", "篮球": "basketball", "网球": "tennis ball", "风筝": "kite",
    "滑板": "skateboard", "冲浪板": "surfboard", "滑雪": "ski", "飞盘": "frisbee", "帽子": "hat",
    "眼镜": "glasses", "鞋": "shoe", "红绿灯": "traffic light", "消防栓": "fire hydrant",
    "停车标志": "stop sign", "长椅": "bench", "吉他": "guitar", "钢琴": "piano", "相机": "camera",
    "水": "water", "雕像": "statue", "灯": "lamp", "门": "door", "窗户": "window",
}

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_KEYS = sorted(GLOSSARY, key=len, reverse=True)


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def translate(text: str) -> str:
    """English rendering of the glossary words in ``text`` (other CJK characters are dropped;
    non-CJK text is kept). "一只猫" → "cat"; "dog" → "dog"; "猫和狗" → "cat dog"."""
    if not has_cjk(text):
        return text

    def run(m: re.Match) -> str:
        s, words, i = m.group(0), [], 0
        while i < len(s):
            for key in _KEYS:
                if s.startswith(key, i):
                    words.append(GLOSSARY[key])
                    i += len(key)
                    break
            else:
                i += 1
        return " " + " ".join(words) + " "

    return " ".join(_CJK.sub(run, text).split())
